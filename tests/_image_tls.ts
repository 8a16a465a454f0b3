/**
 * A throwaway certificate authority and a server certificate it signed, made
 * with `openssl`, for the image's https check (tests/deploy/image_test.ts) and the webhook's
 * certificate rotation (tests/unit/inject/, tests/program/inject_test.ts).
 *
 * @module
 */
import { findExecutable } from "./_image_root.ts";

/** PEM texts: the CA's certificate, and the server's certificate and key. */
export interface TestCertificates {
  ca: string;
  cert: string;
  key: string;
}

/** Whether `openssl` is installed; the https test is skipped without it. */
export function hasOpenssl(): boolean {
  return findExecutable("openssl") !== undefined;
}

/**
 * Makes a CA and a certificate for `localhost` and `127.0.0.1` signed by it,
 * valid for a day, in `dir` (which must exist). P-256 keys: quick to make.
 */
export async function makeTestCertificates(dir: string): Promise<TestCertificates> {
  // Own configuration files: the system's openssl.cnf differs between machines.
  await Deno.writeTextFile(
    `${dir}/ca.cnf`,
    [
      "[req]",
      "prompt = no",
      "distinguished_name = dn",
      "x509_extensions = ca",
      "[dn]",
      "CN = startup-lock image test CA",
      "[ca]",
      "basicConstraints = critical, CA:TRUE",
      "keyUsage = critical, keyCertSign, cRLSign",
      "subjectKeyIdentifier = hash",
      "",
    ].join("\n"),
  );
  await Deno.writeTextFile(
    `${dir}/server.cnf`,
    ["[req]", "prompt = no", "distinguished_name = dn", "[dn]", "CN = localhost", ""].join("\n"),
  );
  await Deno.writeTextFile(
    `${dir}/server.ext`,
    [
      "subjectAltName = DNS:localhost, IP:127.0.0.1",
      "basicConstraints = CA:FALSE",
      "extendedKeyUsage = serverAuth",
      "",
    ].join("\n"),
  );
  const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const ca = ["-config", "ca.cnf", "-days", "1", "-keyout", "ca.key", "-out", "ca.pem"];
  await openssl(dir, ["req", "-x509", ...newKey, ...ca]);
  const csr = ["-config", "server.cnf", "-keyout", "server.key", "-out", "server.csr"];
  await openssl(dir, ["req", "-new", ...newKey, ...csr]);
  const signed = ["-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "1", "-days", "1"];
  const ext = ["-extfile", "server.ext", "-out", "server.pem"];
  await openssl(dir, ["x509", "-req", "-in", "server.csr", ...signed, ...ext]);
  const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
  return {
    ca: await read("ca.pem"),
    cert: await read("server.pem"),
    key: await read("server.key"),
  };
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(findExecutable("openssl")!, { args, cwd, stdout: "null" })
    .output();
  if (out.code !== 0) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Two certificate pairs and the files a TLS server reads, for certificate-rotation tests. */
export interface RotatingCertificates extends AsyncDisposable {
  one: TestCertificates;
  two: TestCertificates;
  certFile: string;
  keyFile: string;
  /** Writes `pair` to the files, as a rotation does. */
  install(pair: TestCertificates): Promise<void>;
}

/**
 * Two certificates for localhost, each from its own CA, in a temporary
 * directory (named with `prefix`, removed on dispose); the first is installed
 * at `certFile` and `keyFile`.
 */
export async function rotatingCertificates(prefix: string): Promise<RotatingCertificates> {
  const dir = await Deno.makeTempDir({ prefix });
  await Deno.mkdir(`${dir}/one`);
  await Deno.mkdir(`${dir}/two`);
  const certFile = `${dir}/tls.crt`;
  const keyFile = `${dir}/tls.key`;
  const install = async (pair: TestCertificates) => {
    await Deno.writeTextFile(certFile, pair.cert);
    await Deno.writeTextFile(keyFile, pair.key);
  };
  const one = await makeTestCertificates(`${dir}/one`);
  const two = await makeTestCertificates(`${dir}/two`);
  await install(one);
  return {
    one,
    two,
    certFile,
    keyFile,
    install,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

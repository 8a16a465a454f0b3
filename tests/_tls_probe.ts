/**
 * What a TLS server presents, seen from outside with the real `openssl`: the
 * SHA-256 fingerprint of the certificate a new connection gets, to compare
 * with a certificate file's. For the webhook's certificate-rotation tests.
 *
 * @module
 */
import { findExecutable } from "./_image_root.ts";
import { runWithInput } from "../scripts/_with_input.ts";

async function openssl(args: string[], stdin = ""): Promise<string> {
  const out = await runWithInput(findExecutable("openssl")!, args, stdin);
  const stdout = new TextDecoder().decode(out.stdout);
  if (out.code !== 0 && !stdout.includes("BEGIN CERTIFICATE")) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return stdout;
}

/** The SHA-256 fingerprint of the first certificate in `pem`, as `AB:CD:…`. */
export async function fingerprint(pem: string): Promise<string> {
  const out = await openssl(["x509", "-noout", "-fingerprint", "-sha256"], pem);
  const match = /Fingerprint=([0-9A-F:]+)/.exec(out);
  if (!match) throw new Error(`No fingerprint in: ${out}`);
  return match[1]!;
}

/** The fingerprint of the certificate a new TLS connection to 127.0.0.1:`port` gets (SNI localhost). */
export async function servedFingerprint(port: number): Promise<string> {
  const out = await openssl([
    "s_client",
    "-connect",
    `127.0.0.1:${port}`,
    "-servername",
    "localhost",
  ]);
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)?.[0];
  if (!pem) throw new Error(`No certificate from 127.0.0.1:${port}: ${out}`);
  return await fingerprint(pem);
}

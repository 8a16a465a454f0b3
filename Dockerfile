# syntax=docker/dockerfile:1
#
# The startup-lock image: the compiled executable on an empty base (FROM scratch), with only what
# it needs to run (its shared libraries, CA certificates, a non-root user) and no shell.
#
# Build and run (Docker 23 or later, or any BuildKit builder):
#
# docker build -t startup-lock .
# docker run --rm -p 8888:8888 startup-lock --locks 2
#
# The root can be read-only. For https checks against a private CA, mount a bundle holding it (and
# the public roots, if needed) over the image's:
#
# docker run --rm --read-only -p 8888:8888 \
#   -v "$PWD/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro" \
#   startup-lock --check https://search.internal:9200
#
# Both architectures as one multi-arch image, pushed to a registry (the foreign architecture is
# built under QEMU emulation; where it is not set up, docker run --privileged --rm
# tonistiigi/binfmt --install arm64):
#
# docker buildx build --platform linux/amd64,linux/arm64 \
#   -t registry.example.com/startup-lock:0.1.0 --push .
#
# Docker cannot run on our build machines, so tests/deploy/image_test.ts checks this file: that the
# library list covers what `ldd` reports, and that the program runs, as uid 65532 under chroot, in
# a folder holding exactly what the final stage below copies.

# The builder: the official Deno image, pinned to the version the project is tested with. It runs
# on the target platform (emulated for a foreign one), so `deno compile` builds for that platform
# and the libraries gathered below are that platform's.
FROM denoland/deno:debian-2.9.6 AS builder

# The CA bundle for the final image: the slim Debian base has none.
RUN apt-get update \
  && apt-get install -y --no-install-recommends ca-certificates \
  && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# .dockerignore lets only the program's sources in, so editing docs or tests keeps this cache.
COPY . .
# Writes dist/startup-lock with the permissions of the startup-lock set in deno.json baked in. deno compile
# downloads the matching runtime (denort), so this step needs the internet.
RUN deno task compile

# The shared libraries the executable loads (it is not static): what `ldd dist/startup-lock`
# lists. The RUN below fails the build when the executable needs one more.
ARG LIBRARIES="libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libgcc_s.so.1"
# Set by BuildKit to the platform being built. Each platform has its own library folder, and its
# dynamic loader must sit at the path written in the executable (its ELF interpreter).
ARG TARGETARCH
# Gathers the libraries and the loader into /staging, as they will lie in the image. cp -L copies
# the files, not the symlinks the names often are.
RUN set -eu; \
  case "$TARGETARCH" in \
    amd64) libdir=/lib/x86_64-linux-gnu; loader=/lib64/ld-linux-x86-64.so.2 ;; \
    arm64) libdir=/lib/aarch64-linux-gnu; loader=/lib/ld-linux-aarch64.so.1 ;; \
    *) echo "Unsupported TARGETARCH \"$TARGETARCH\": expected amd64 or arm64" >&2; exit 1 ;; \
  esac; \
  mkdir -p "/staging$libdir" "/staging${loader%/*}"; \
  for lib in $LIBRARIES; do cp -L "$libdir/$lib" "/staging$libdir/"; done; \
  cp -L "$loader" "/staging$loader"; \
  for lib in $(ldd dist/startup-lock | awk '$2 == "=>" { print $1 }'); do \
    [ -e "/staging$libdir/$lib" ] || { echo "ldd lists $lib: add it to LIBRARIES" >&2; exit 1; }; \
  done

# The image: nothing but what is copied here. No shell or package manager to exec into or patch;
# the program writes no file (compiled with --no-code-cache), so a read-only root works.
FROM scratch
COPY --from=builder /staging/ /
# Debian's CA bundle, for https dependency checks.
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The user the program runs as, so tools can name uid 65532 (distroless's "nonroot").
COPY <<EOF /etc/passwd
nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin
EOF
COPY <<EOF /etc/group
nonroot:x:65532:
EOF
# Without this file glibc asks DNS before /etc/hosts, so "localhost" and the runtime's host
# entries (docker run --add-host, Kubernetes hostAliases) could resolve otherwise or not at all.
COPY <<EOF /etc/nsswitch.conf
hosts: files dns
EOF
COPY --from=builder /src/dist/startup-lock /startup-lock

# Deno trusts its bundled Mozilla roots by default. "system" makes it trust the bundle above
# instead, so a private CA counts once the operator adds it there (mounts a bundle over it).
ENV DENO_TLS_CA_STORE=system
USER 65532:65532
EXPOSE 8888
# No curl in the image: the executable asks http://127.0.0.1:8888/healthz itself (the port of
# STARTUP_LOCK_PORT when set) and exits 0 on 200. Its own timeout is 5 s.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --retries=3 \
  CMD ["/startup-lock", "healthcheck"]
ENTRYPOINT ["/startup-lock"]

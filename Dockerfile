# kube-oidc-proxy image. Images cannot be built on the development machines (no container
# runtime there); the build step is `make release` (the same cargo command), which `make test` and
# CI run, so what CI tests is what this file builds.
#
#   docker build --build-arg KOP_GIT_COMMIT=$(git rev-parse --short=12 HEAD) \
#     --build-arg KOP_BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t kube-oidc-proxy .

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
ARG KOP_GIT_COMMIT=unknown
ARG KOP_BUILD_DATE=unknown
ENV KOP_GIT_COMMIT=${KOP_GIT_COMMIT} KOP_BUILD_DATE=${KOP_BUILD_DATE}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY bench ./bench
RUN cargo build --release --locked --bin kube-oidc-proxy \
 && install -m 0755 target/release/kube-oidc-proxy /kube-oidc-proxy \
 && /kube-oidc-proxy --version

# glibc and CA roots, nothing else: no shell, no package manager; runs as non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG KOP_GIT_COMMIT=unknown
ARG KOP_BUILD_DATE=unknown
LABEL org.opencontainers.image.title="kube-oidc-proxy" \
      org.opencontainers.image.description="OIDC gateway to many Kubernetes clusters, with RBAC inside the proxy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${KOP_GIT_COMMIT}" \
      org.opencontainers.image.created="${KOP_BUILD_DATE}"
COPY --from=build /kube-oidc-proxy /usr/local/bin/kube-oidc-proxy
USER 65532:65532
# HTTPS (--secure-port) and the plain-HTTP probes and metrics (--readiness-probe-port).
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/kube-oidc-proxy"]
CMD ["--help"]

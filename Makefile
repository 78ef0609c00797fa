# The two commands a newcomer needs (see README.md):
#   make demo   run the proxy in front of local clusters and Keycloak
#   make test   run every test ring
.PHONY: test e2e lint build release demo fuzz-smoke

test: lint
	cargo test --all-targets
	$(MAKE) release
	e2e/run

# The release build, exactly as the Dockerfile's build step runs it.
release:
	cargo build --release --locked --bin kube-oidc-proxy

e2e:
	e2e/run

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

build:
	cargo build --release

demo:
	e2e/demo

# Each fuzz target for a minute (nightly; fuzz/run installs what it needs). Hour-long runs:
# fuzz/run 3600.
fuzz-smoke:
	fuzz/run 60

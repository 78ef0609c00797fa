# The two commands a newcomer needs (see README.md):
#   make demo   run the proxy in front of local clusters and Keycloak
#   make test   run every test ring
.PHONY: test unit lint build demo

test: lint
	cargo test --all-targets

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

build:
	cargo build --release

demo:
	@echo "The local demo (two kube-apiservers, Keycloak and the proxy) comes with the end-to-end ring (issue 4)." >&2
	@exit 2

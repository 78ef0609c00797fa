# The two commands a newcomer needs (see README.md):
#   make demo   run the proxy in front of local clusters and Keycloak
#   make test   run every test ring
.PHONY: test e2e lint build demo

test: lint
	cargo test --all-targets
	e2e/run

e2e:
	e2e/run

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

build:
	cargo build --release

demo:
	e2e/demo

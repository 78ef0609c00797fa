#!/usr/bin/env bash
# e2e/fake-kubelet/build.sh — build the fake kubelet test fixture once per source version and
# print the binary's path on stdout (progress goes to stderr).
#
# The binary lives outside the work tree, in ${KOP_CACHE:-$HOME/.cache/kube-oidc-proxy}/
# fake-kubelet-<hash>/fake-kubelet, where <hash> covers this module's sources, go.mod/go.sum
# and the Go version: unchanged sources reuse the cached binary (a second run takes
# milliseconds), any change builds a fresh one next to it.
#
# Dependencies come from the Go module proxy (k8s.io/* pinned to v0.35.4 in go.mod, the same
# release as the ring's kube-apiserver). Measured on 2 cores: ~70 s with an empty GOCACHE and the
# k8s modules already in the module cache (an empty one adds ~185 MB of downloads, ~5 s here).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KOP_CACHE:-$HOME/.cache/kube-oidc-proxy}"

command -v go >/dev/null || { echo "fake-kubelet: 'go' not found on PATH (need Go >= 1.25)" >&2; exit 1; }

hash="$(
	cd "$here"
	{
		GOTOOLCHAIN=local go version
		for f in go.mod go.sum $(LC_ALL=C ls ./*.go); do
			printf '%s\n' "$f"
			cat "$f"
		done
	} | sha256sum | cut -c1-16
)"
out_dir="$cache/fake-kubelet-$hash"
bin="$out_dir/fake-kubelet"

if [[ -x "$bin" ]]; then
	echo "fake-kubelet: cached $bin" >&2
	echo "$bin"
	exit 0
fi

echo "fake-kubelet: building $bin ..." >&2
start=$SECONDS
mkdir -p "$out_dir"
tmp="$(mktemp "$out_dir/.fake-kubelet.XXXXXX")"
trap 'rm -f "$tmp"; rmdir "$out_dir" 2>/dev/null || true' EXIT
(
	cd "$here"
	# -mod=mod: resolve from go.mod/go.sum through the module proxy, no vendor dir.
	GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod \
		nice -n 19 go build -trimpath -ldflags='-s -w' -o "$tmp" .
)
chmod 0755 "$tmp"
mv -f "$tmp" "$bin" # atomic: a concurrent reader sees either nothing or the whole binary
trap - EXIT
echo "fake-kubelet: built in $((SECONDS - start))s" >&2
echo "$bin"

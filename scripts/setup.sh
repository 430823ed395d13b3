#!/usr/bin/env bash
# Install what building and testing rdio needs on Debian 12, idempotently:
# the RDMA and libfabric development packages (bindgen needs libclang), and
# the Rust components and target CI uses. Safe to run again; does nothing
# that is already done. Needs root (or sudo) for apt.
set -euo pipefail

# fonts-dejavu-core: the text of `rdio bench --plot`.
# iproute2: `ip netns` for the two-host test (cli/tests/network.rs).
# tshark: decodes `--capture` files with dissector/rdio.lua (cli/tests/capture.rs).
packages=(libibverbs-dev librdmacm-dev libclang-dev clang pkg-config libfabric-dev libfabric-bin fonts-dejavu-core iproute2 tshark)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo=(sudo)
    fi
    echo "setup: installing ${missing[*]}"
    # tshark's wireshark-common asks whether non-root users may capture:
    # answer no up front, so the install never prompts.
    echo "wireshark-common wireshark-common/install-setuid boolean false" |
        "${sudo[@]}" debconf-set-selections
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
    echo "setup: apt packages already installed"
fi

if ! command -v rustup >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck source=/dev/null
    source "$HOME/.cargo/env"
fi
if ! command -v rustup >/dev/null 2>&1; then
    echo "setup: rustup not found; install it from the Rust project first" >&2
    exit 1
fi
# rust-toolchain.toml pins the channel; these are no-ops when present.
rustup component add clippy rustfmt
rustup target add thumbv7em-none-eabihf
echo "setup: done"

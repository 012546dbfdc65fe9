#!/bin/sh
# Install what svclab needs on Debian 12 / Ubuntu 22.04+: Debian packages
# (Mininet and the real networking tools) and a virtual environment that sees
# Debian's mininet module. Idempotent: a second run installs nothing.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    exec sudo -E sh "$0" "$@"
fi

# The second line: the real tools pods and nodes run (an image's `wget`, `nslookup`,
# `dig`, `curl`, `nc`, `ping`, `ps`, busybox's applets, netshoot's zsh, and nginx for
# the nginx images: docs/images.md).
PACKAGES="mininet iptables nftables iproute2 tcpdump iputils-ping conntrack \
bridge-utils net-tools util-linux procps curl wget bind9-dnsutils netcat-openbsd busybox zsh nginx \
python3 python3-venv python3-pip"

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    # nginx is installed for the lab's pods only: the machine gets no nginx service of
    # its own (the package enables and starts one where systemd runs).
    case " $missing " in
    *" nginx "*)
        if command -v systemctl >/dev/null 2>&1; then
            systemctl disable nginx.service >/dev/null 2>&1 || true
            if [ -d /run/systemd/system ]; then
                systemctl stop nginx.service >/dev/null 2>&1 || true
            fi
        fi ;;
    esac
fi

# Debian's python3 (not a pyenv or conda one): it is the one that sees mininet.
PYTHON=/usr/bin/python3
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import mininet" 2>/dev/null; then
    echo "setup: creating .venv (with system site packages, for mininet)"
    rm -rf .venv
    "$PYTHON" -m venv --system-site-packages .venv
fi
stamp=.venv/.svclab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing svclab and its Python dependencies into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch "$stamp"
fi

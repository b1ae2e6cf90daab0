#!/usr/bin/env bash
# System packages the tests need: headless Chromium + ChromeDriver (the report is checked in a real
# browser) and Fashion-MNIST (benchmarks and data/make_fashion_mnist_demo.py read the full set).
set -euo pipefail
pkgs=(chromium chromium-driver dataset-fashion-mnist)
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "install these packages with your system's package manager: ${missing[*]}" >&2; exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

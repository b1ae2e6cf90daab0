#!/usr/bin/env bash
# System packages for the tests: headless Chromium + ChromeDriver (the report is checked in a real
# browser). With --dataset also Fashion-MNIST (dataset-fashion-mnist): only the benchmarks, the
# scripts in data/ and the slow test that re-makes the bundled demo read the full set; the default
# test run uses the bundled demo in data/.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
case "${1:-}" in
  "") ;;
  --dataset) [ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist) ;;
  *) echo "usage: $0 [--dataset]" >&2; exit 2 ;;
esac
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "install these packages with your system's package manager: ${missing[*]}" >&2; exit 1
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Makes docs/report.png, the README's picture of `segflow report` (and docs/report.png.sha256,
# the report code it shows): the demo shop, published for
# its last 15 nights (so that segments have a history to draw), its report opened in headless
# Chromium. Run it from the repository after a change to the report:
#   bash docs/screenshot.sh [path/to/segflow]
set -euo pipefail
cd "$(dirname "$0")/.."
export SEGFLOW_LOG=warn
segflow="${1:-${CARGO_TARGET_DIR:-target}/debug/segflow}"
[[ -x "$segflow" ]] || { echo "build segflow first (cargo build), or name the binary" >&2; exit 1; }
segflow="$(realpath "$segflow")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$segflow" demo --dir "$work/demo" >/dev/null
cd "$work/demo"
latest="$(date -u -d yesterday +%F)"
SEGFLOW_DATA=data SEGFLOW_OUT=out SEGFLOW_REPORT=report.html "$segflow" backfill \
  pipelines/nightly_segments.yaml --state state --force \
  --from "$(date -u -d "$latest - 14 days" +%F)" --to "$latest" >/dev/null
cd - >/dev/null
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/chromium" --hide-scrollbars --window-size=1280,2300 \
  --screenshot="$PWD/docs/report.png" "file://$work/demo/report.html" 2>/dev/null
# What the picture was made from: tests/it/docs/pages.rs fails when the report's code changes
# and the picture is not made again.
cat $(printf '%s\n' src/report/*.rs src/report/page.css src/report/page.js src/report/sql/*.sql | LC_ALL=C sort) \
  | sha256sum | cut -d' ' -f1 > docs/report.png.sha256
echo "wrote docs/report.png"

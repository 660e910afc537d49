#!/usr/bin/env bash
# Rebuild the dashboard's vendored assets from the locked npm packages in webui/.
# Only needed to upgrade them: the built files are committed under
# src/affectlens/web/static/vendor/, so installing affectlens needs no npm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
vendor="$root/src/affectlens/web/static/vendor"
cd "$root/webui"
npm ci --ignore-scripts --no-audit --no-fund
mkdir -p "$vendor"
cp node_modules/chart.js/dist/chart.umd.min.js "$vendor/chart.umd.min.js"
cp node_modules/chart.js/LICENSE.md "$vendor/chart.js.LICENSE.md"
# the UMD bundle includes @kurkle/color (MIT), so its licence ships too
cp node_modules/@kurkle/color/LICENSE.md "$vendor/kurkle-color.LICENSE.md"
echo "vendored chart.js $(node -p "require('./node_modules/chart.js/package.json').version") into $vendor"

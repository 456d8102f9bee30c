# Sourced by the *-tests.sh scripts that need Python packages of their own.
# check_venv DIR PIP_ARGS…: make (or reuse) the virtual environment DIR with `pip install PIP_ARGS…`;
# it is rebuilt when the files those arguments name (-r FILE, -e DIR's pyproject.toml) change.
# On failure prints the `0 passed, 1 failed` line the suite counts and exits.
check_venv() {
    local venv="$1" name
    shift
    name="$(basename "$venv")"
    local want="" prev=""
    for arg in "$@"; do
        case "$prev" in
        -r) want+="$(cksum <"$arg")" ;;
        -e) want+="$(cksum <"$arg/pyproject.toml")" ;;
        esac
        prev="$arg"
    done
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
        if ! { python3 -m venv "$venv" && "$venv/bin/python" -m pip install --quiet "$@"; } >&2; then
            echo "$name: could not build $venv" >&2
            echo "0 passed, 1 failed"
            exit 1
        fi
        printf '%s\n' "$want" >"$venv/.installed"
    fi
}

#!/usr/bin/env bash
# Create (or refresh) .venv with Python >= 3.12 and the locked dependencies.
# Idempotent: does nothing when .venv already matches requirements.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCK=requirements.lock
VENV=.venv
UV_VERSION=0.13.8

is_py312() {  # $1: interpreter command; true when it runs and is >= 3.12
    "$1" -c 'import sys; raise SystemExit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
    local cand
    if [[ -n "${LMM_PYTHON:-}" ]]; then
        if is_py312 "$LMM_PYTHON"; then echo "$LMM_PYTHON"; return 0; fi
        echo "bootstrap: LMM_PYTHON=$LMM_PYTHON is not a Python >= 3.12; unset it or point it at one" >&2
        return 1
    fi
    for cand in python3.12 python3.13 python3; do
        if command -v "$cand" >/dev/null 2>&1 && is_py312 "$cand"; then command -v "$cand"; return 0; fi
    done
    # pyenv-managed interpreters (the shims above fail unless a version is selected)
    if command -v pyenv >/dev/null 2>&1; then
        local root; root="$(pyenv root)"
        for cand in "$root"/versions/3.12*/bin/python3 "$root"/versions/3.13*/bin/python3; do
            if [[ -x "$cand" ]] && is_py312 "$cand"; then echo "$cand"; return 0; fi
        done
    fi
    return 1
}

lock_hash="$( (cat "$LOCK" pyproject.toml) | sha256sum | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$VENV/.lock-hash" && "$(cat "$VENV/.lock-hash")" == "$lock_hash" ]]; then
    exit 0
fi

if ! PY="$(find_python)"; then
    echo "bootstrap: no Python >= 3.12 found (tried \$LMM_PYTHON, python3.13, python3.12, python3, pyenv versions); install one (e.g. 'pyenv install 3.12') or set LMM_PYTHON=/path/to/python3.12" >&2
    exit 2
fi
echo "bootstrap: using $PY ($("$PY" -V 2>&1))" >&2

if [[ -x "$VENV/bin/python" ]] && ! is_py312 "$VENV/bin/python"; then rm -rf "$VENV"; fi
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
if ! "$VENV/bin/python" -m uv --version 2>/dev/null | grep -q "$UV_VERSION"; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
"$VENV/bin/python" -m uv pip install --quiet --python "$VENV/bin/python" --require-hashes -r "$LOCK"
"$VENV/bin/python" -m uv pip install --quiet --python "$VENV/bin/python" --no-deps -e .
echo "$lock_hash" > "$VENV/.lock-hash"
echo "bootstrap: environment ready in $VENV" >&2

# Create or reuse the virtual environment from requirements.txt. Sourced by the other scripts.
# PYTHON picks the interpreter (default python3, 3.11 expected); NBHELPERS_VENV the venv folder.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${NBHELPERS_VENV:-$ROOT/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating virtual environment in $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
# Reinstall only when the requirements (or the package metadata) changed.
stamp="$VENV/.requirements.sha256"
want=$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing requirements.txt into $VENV (about a minute)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  (cd "$ROOT" && "$VENV/bin/python" -m pip install -q -r requirements.txt)
  echo "$want" >"$stamp"
fi
export PATH="$VENV/bin:$PATH"

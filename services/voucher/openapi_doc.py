"""Write or check the committed OpenAPI document (`make openapi`, `make openapi-check`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from services.voucher.main import create_app
from services.voucher.settings import Settings

PATH = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def render() -> str:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    document: dict[str, Any] = app.openapi()
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    mode = argv[1] if len(argv) > 1 else "check"
    current = render()
    if mode == "write":
        PATH.parent.mkdir(exist_ok=True)
        PATH.write_text(current, encoding="utf-8")
        print(f"wrote {PATH.relative_to(Path.cwd()) if PATH.is_relative_to(Path.cwd()) else PATH}")
        return 0
    committed = PATH.read_text(encoding="utf-8") if PATH.exists() else ""
    if committed != current:
        print("openapi/openapi.json is out of date: run `make openapi` and commit it", file=sys.stderr)
        return 1
    print("openapi/openapi.json matches the app")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

"""The ASGI app for uvicorn: `uvicorn services.voucher.asgi:app`."""

from services.voucher.main import create_app

app = create_app()

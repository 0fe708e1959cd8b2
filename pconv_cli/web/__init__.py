"""``pconv serve``: a local web page to paint a mask and inpaint, and the JSON API it uses.

Needs the ``web`` extra (FastAPI, uvicorn, python-multipart): ``pip install
'pconv-cli[web]'``. :func:`pconv_cli.web.app.create_app` builds the app; the page
is ``static/index.html`` (plain HTML, CSS and JavaScript, no build step).
"""

WEB_MODULES = ("fastapi", "uvicorn", "multipart")
"""Modules of the ``web`` extra (``multipart`` is python-multipart)."""


def missing_web_modules() -> list[str]:
    """The ``web`` extra's modules that cannot be imported here."""
    from importlib.util import find_spec

    return [name for name in WEB_MODULES if find_spec(name) is None]

"""Every mounted handler must say whether it needs authentication."""

from __future__ import annotations

import pytest
from tornado import web

from zasperhub.platform.web import routes
from zasperhub.platform.web.base import BaseHandler


def _handler_classes() -> list[type]:
    classes = []
    for entry in routes.collect_handlers("/base/"):
        handler = entry[1]
        classes.append(handler)
    return classes


@pytest.mark.parametrize("cls", _handler_classes(), ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_handler_declares_auth_required(cls: type) -> None:
    assert issubclass(cls, web.RequestHandler)
    assert issubclass(cls, BaseHandler), f"{cls.__qualname__} bypasses BaseHandler's host, auth and XSRF checks"
    assert getattr(cls, "auth_required", None) in (True, False), f"{cls.__qualname__} does not declare auth_required"


def test_route_table_is_not_empty_and_login_routes_are_mounted() -> None:
    patterns = [entry[0] for entry in routes.collect_handlers("/base/")]
    assert "/base/login" in patterns and "/base/logout" in patterns and "/base/oauth_callback" in patterns
    assert "/base/api/?" in patterns


def test_base_handler_itself_is_undeclared() -> None:
    # The default must stay None so a forgotten declaration is caught above.
    assert BaseHandler.auth_required is None


def test_unknown_urls_go_through_base_handler() -> None:
    from zasperhub.platform.app import ZasperApp

    app = ZasperApp()
    settings = app.make_web_app().settings
    default = settings["default_handler_class"]
    assert issubclass(default, BaseHandler) and default.auth_required is False

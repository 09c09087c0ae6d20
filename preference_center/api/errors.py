"""JSON errors for the API: {"error": {"code", "message"}} with a 4xx status."""
from __future__ import annotations

from flask import jsonify


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def response(self):
        body = {"error": {"code": self.code, "message": self.message}}
        if self.field:
            body["error"]["field"] = self.field
        return jsonify(body), self.status


def error_response(status: int, code: str, message: str):
    return ApiError(status, code, message).response()

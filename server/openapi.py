"""The OpenAPI 3.1 document, built from the routes and their `@api` declarations."""

import re

from pydantic import BaseModel, TypeAdapter

from handlers.base import ApiSpec
from models.access import holders

METHODS = ("get", "post", "put", "patch", "delete")
ERROR_SCHEMA = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
        "request_id": {"type": ["string", "null"]}}}},
}


class _Schemas:
    """Collects component schemas so each model is defined once and referenced."""

    def __init__(self):
        self.components: dict = {"Error": ERROR_SCHEMA}

    def ref(self, model) -> dict:
        adapter = TypeAdapter(model)
        schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
        self.components.update(schema.pop("$defs", {}))
        if isinstance(model, type) and issubclass(model, BaseModel):
            self.components[model.__name__] = schema
            return {"$ref": f"#/components/schemas/{model.__name__}"}
        return schema


def build_spec(routes: list[tuple], title: str, version: str) -> dict:
    schemas = _Schemas()
    paths: dict = {}
    for template, handler, *_ in routes:
        template = re.sub(r"{(\w+):[^}]+}", r"{\1}", template)
        for method in METHODS:
            spec: ApiSpec | None = getattr(getattr(handler, method, None), "api", None)
            if spec is not None:
                paths.setdefault(template, {})[method] = _operation(template, handler, method, spec,
                                                                    schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _operation(template: str, handler: type, method: str, spec: ApiSpec, schemas: _Schemas) -> dict:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in re.findall(r"{(\w+)}", template)]
    if spec.query:
        # The model's own schema keeps each parameter's constraints (bounds, patterns, enums).
        properties = spec.query.model_json_schema(
            ref_template="#/components/schemas/{model}")["properties"]
        for name, field in spec.query.model_fields.items():
            schema = {k: v for k, v in properties[name].items() if k not in ("title", "description")}
            params.append({"name": name, "in": "query", "required": field.is_required(),
                           "schema": schema,
                           **({"description": field.description} if field.description else {})})
    op: dict = {
        "operationId": f"{handler.__name__}.{method}",
        "summary": spec.summary,
        "tags": [handler.__module__.rsplit(".", 1)[-1]],
        "parameters": params,
        "responses": {str(spec.status): _response(spec, schemas),
                      **{str(status): _error(why) for status, why in _errors(template, spec).items()},
                      "default": _error("any other error")},
    }
    if spec.body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": schemas.ref(spec.body)}}}
    if spec.uploads:
        form = {"type": "object", "required": [spec.upload_field], "properties": {
            spec.upload_field: {"type": "array", "items": {"type": "string", "format": "binary"}}
            if spec.upload_many else {"type": "string", "format": "binary"}}}
        op["requestBody"] = {"required": True, "content": {
            media: {"schema": form if media == "multipart/form-data"
                    else {"type": "string", "contentMediaType": media}}
            for media in spec.uploads}}
    if spec.permission:
        op["description"] = f"Needs `{spec.permission}`: {holders(spec.permission)}."
    op["security"] = [] if spec.public else [{"bearer": []}]
    return op


def _errors(template: str, spec: ApiSpec) -> dict[int, str]:
    """The errors an operation can answer, from what it declares (handlers/base.py)."""
    errors: dict[int, str] = {}
    if spec.body or spec.query or spec.uploads:
        errors[400] = "a field is bad or unknown (`fields` names each)"
    if not spec.public or template.startswith("/api/auth/"):
        errors[401] = "no valid access token (signing in: wrong credentials)"
    if spec.permission or spec.audience:
        errors[403] = "not allowed for the caller's role"
    if spec.permission:
        errors[404] = "no such community for the caller, or no such object in it"
    if spec.body or spec.uploads:
        errors[413] = "the body is larger than this route takes (`limit` in bytes)"
    if spec.rate_limited:
        errors[429] = "too many attempts (`Retry-After`)"
    errors[503] = "a backing store is not answering (`store` names it)"
    errors.update(spec.errors)
    return errors


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}


def _response(spec: ApiSpec, schemas: _Schemas) -> dict:
    if spec.response is None:
        return {"description": "done"}
    if spec.content_type != "application/json":
        return {"description": "ok", "content": {spec.content_type: {"schema": {"type": "string"}}}}
    return {"description": "ok", "content": {"application/json": {"schema": schemas.ref(spec.response)}}}



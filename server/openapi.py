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
        for name, field in spec.query.model_fields.items():
            params.append({"name": name, "in": "query", "required": field.is_required(),
                           "schema": schemas.ref(field.annotation),
                           **({"description": field.description} if field.description else {})})
    op: dict = {
        "operationId": f"{handler.__name__}.{method}",
        "summary": spec.summary,
        "tags": [handler.__module__.rsplit(".", 1)[-1]],
        "parameters": params,
        "responses": {str(spec.status): _response(spec, schemas),
                      "default": {"description": "error", "content": {"application/json": {
                          "schema": {"$ref": "#/components/schemas/Error"}}}}},
    }
    if spec.body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": schemas.ref(spec.body)}}}
    if spec.uploads:
        op["requestBody"] = {"required": True, "content": {
            media: {"schema": {"type": "string", "contentMediaType": media}}
            if media != "multipart/form-data" else
            {"schema": {"type": "object", "properties": {"file": {"type": "string",
                                                                  "format": "binary"}}}}
            for media in spec.uploads}}
    if spec.permission:
        op["description"] = f"Needs `{spec.permission}`: {holders(spec.permission)}."
    op["security"] = [] if spec.public else [{"bearer": []}]
    return op


def _response(spec: ApiSpec, schemas: _Schemas) -> dict:
    if spec.response is None:
        return {"description": "done"}
    if spec.content_type != "application/json":
        return {"description": "ok", "content": {spec.content_type: {"schema": {"type": "string"}}}}
    return {"description": "ok", "content": {"application/json": {"schema": schemas.ref(spec.response)}}}



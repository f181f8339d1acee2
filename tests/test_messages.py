"""Errors read in Chinese by default and in English on request, with the same machine codes;
every text an error can be raised with has its Chinese words in models/messages.py."""

import ast
import string
from pathlib import Path

import pytest

from models.messages import PARAM_WORDS_ZH, ZH, Text, negotiate, say
from tests.builders import make_community, make_platform_admin

ROOT = Path(__file__).parent.parent
EN = {"Accept-Language": "en-GB,en;q=0.9"}


def _error_classes() -> set[str]:
    """DomainError and every class derived from it in the code."""
    found, changed = {"DomainError"}, True
    trees = [ast.parse(p.read_text()) for p in _sources()]
    while changed:
        changed = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in found and any(
                        isinstance(b, ast.Name) and b.id in found for b in node.bases):
                    found.add(node.name)
                    changed = True
    return found


def _sources() -> list[Path]:
    return [p for folder in ("models", "handlers", "server") for p in (ROOT / folder).glob("*.py")]


def _raised_texts() -> tuple[list[tuple[str, str]], list[str]]:
    """(where, English template) for every text an error is raised with, and the places that
    build one with an f-string (which no catalogue can key)."""
    errors = _error_classes() | {"bad_code"}  # server/wechat.py takes the class as a parameter
    texts, fstrings = [], []

    def text_of(node, where):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts.append((where, node.value))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Text":
            pass  # collected below, with every Text
        elif isinstance(node, ast.JoinedStr):
            fstrings.append(where)

    for path in _sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name == "Text" and isinstance(node.args[0], ast.Constant):
                texts.append((where, node.args[0].value))
            elif name in errors or name == "Required":
                for arg in node.args[1 if name == "Required" else 0:]:
                    text_of(arg, where)
                for keyword in node.keywords:
                    if keyword.arg == "fields" and isinstance(keyword.value, ast.Dict):
                        for value in keyword.value.values:
                            text_of(value, where)
            elif name == "take":  # RateLimits.take(..., message=...)
                for keyword in node.keywords:
                    if keyword.arg == "message":
                        text_of(keyword.value, where)
    return texts, fstrings


def test_every_raised_text_has_its_chinese_words_and_none_is_an_fstring():
    texts, fstrings = _raised_texts()
    assert len(texts) > 150
    assert not fstrings, f"use models.messages.Text(template, **params) at {fstrings}"
    missing = sorted({(text, where) for where, text in texts if text not in ZH})
    assert not missing, f"add these to models/messages.py ZH: {missing}"


def test_the_chinese_words_use_only_the_parameters_of_their_english_template():
    texts, _ = _raised_texts()
    for _, template in texts:
        english = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        chinese = {f for _, f, _, _ in string.Formatter().parse(ZH[template]) if f}
        assert chinese <= english, (template, chinese - english)


def test_words_that_are_parameters_are_translated_too():
    text = Text("a {noun} that is {state} cannot be {done}", noun="repair", state="on site",
                done="followed up")
    assert text == "a repair that is on site cannot be followed up"  # reads as English
    assert say(text, "zh") == "报修已到场，不能回访"
    assert say(text, "en") is text
    roles = Text("{action} is for the {actors}", action="resolve", actors=("assignee", "dispatcher"))
    assert roles == "resolve is for the assignee or dispatcher"
    assert say(roles, "zh") == "只有被派人员或调度（客服）可以执行此操作（处理完成）"
    assert say("a text nobody translated", "zh") == "a text nobody translated"
    assert set(PARAM_WORDS_ZH["state"]) >= {"submitted", "closed", "pending"}


def test_the_language_is_chinese_unless_english_is_asked_for():
    assert negotiate("") == negotiate("fr-FR,de;q=0.8") == negotiate("zh-CN,zh;q=0.9") == "zh"
    assert negotiate("en-US,en;q=0.9") == negotiate("fr-FR, en;q=0.5") == "en"
    assert negotiate("en", chosen="zh") == "zh"


@pytest.mark.asyncio
async def test_errors_in_both_languages_keep_their_codes(app, api_client):
    boss = await make_platform_admin(app)
    c = await make_community(app, "msgs")
    cases = [  # (method, path, body, token, status, code, Chinese words, English words)
        ("POST", "/api/auth/staff", {"username": "nobody", "password": "wrong password"}, None,
         401, "bad_credentials", "用户名或密码错误", "wrong username or password"),
        ("GET", "/api/no/such/route", None, None, 404, "not_found", "没有这个接口", "no such route"),
        ("POST", "/api/communities", {"name": "Again", "code": "msgs"}, boss,
         409, "conflict", "小区代码 'msgs' 已存在", "community code 'msgs' exists"),
        ("GET", f"/api/communities/{c.id}/tickets/{'0' * 24}", None, c.tokens["manager"],
         404, "not_found", "未找到该工单", "ticket not found"),
        ("GET", f"/api/communities/{c.id}/kpi?period=year", None, c.tokens["manager"],
         400, "invalid_field", "填写有误：period", "invalid period"),
    ]
    for method, path, body, token, status, code, chinese, english in cases:
        said = {}
        for lang, headers in (("zh", {}), ("en", EN)):
            reply = await api_client.call(method, path, body, token=token, headers=headers)
            assert (reply.status, reply.error["code"]) == (status, code), (path, reply.body)
            said[lang] = reply.error["message"]
        assert said == {"zh": chinese, "en": english}, path


@pytest.mark.asyncio
async def test_field_hints_follow_the_language_and_keep_their_field_names(app, api_client):
    boss = await make_platform_admin(app)
    body = {"name": "Garden", "code": "Bad Code", "time_zone": "Mars/Olympus"}
    chinese = await api_client.post("/api/communities", {"code": "x"}, token=boss)
    english = await api_client.post("/api/communities", {"code": "x"}, token=boss, headers=EN)
    assert chinese.error["fields"] == {"name": "必填"}  # pydantic's "missing", in Chinese
    assert english.error["fields"] == {"name": "Field required"}
    zone = await api_client.post("/api/communities", {**body, "code": "ok"}, token=boss)
    assert (zone.error["code"], zone.error["fields"]) == (
        "invalid_field", {"time_zone": "应为 IANA 时区名，例如 Asia/Shanghai"})
    zone = await api_client.post("/api/communities", {**body, "code": "ok"}, token=boss, headers=EN)
    assert zone.error["fields"] == {"time_zone": "an IANA name like Asia/Shanghai"}

"""What errors say to people: the one catalogue of their words, Chinese by default, English
beside.

An error is raised with its English words — a plain string, or a `Text`: a template and its
parameters ("place {path} exists", path="3"), which reads as the English string everywhere
(logs, `str`, tests) and keeps both parts for translation. The English template is the key
here: the machine `code` an error carries (and the keys of its `fields`) never change with
the language, but one code serves many texts (`invalid_field`, `not_found`), so it cannot key
the words alone. `say(text, lang)` gives the words in a language; a text missing from the
catalogue is shown as raised, and tests/test_messages.py walks every raise so none is.

Parameters named in PARAM_WORDS are words themselves (a ticket's state, an action) and are
translated too; a tuple parameter is a list of them ("security or manager").
"""

from collections.abc import Mapping

LANGS = ("zh", "en")
DEFAULT_LANG = "zh"


class Text(str):
    """English words from a template and its parameters, remembering both."""

    template: str
    params: Mapping

    def __new__(cls, template: str, **params):
        shown = {k: " or ".join(map(str, v)) if isinstance(v, tuple) else v
                 for k, v in params.items()}
        text = super().__new__(cls, template.format(**shown) if params else template)
        text.template, text.params = template, params
        return text


def negotiate(accept_language: str, chosen: str | None = None) -> str:
    """`chosen` if given, else the first language of an Accept-Language header we speak,
    else Chinese (the offices and residents are Chinese-speaking)."""
    if chosen in LANGS:
        return chosen
    for part in accept_language.split(","):
        primary = part.split(";")[0].strip().lower()[:2]
        if primary in LANGS:
            return primary
    return DEFAULT_LANG


def in_lang(words: tuple[str, str], lang: str) -> str:
    """One language's words of a (Chinese, English) pair: the one form of the server's word
    tables (models/access_log.py, models/places.py, models/equipment.py CHECK_WORDS), as the
    admin's `words(prefix, {name: [zh, en]})` is of its own."""
    return words[LANGS.index(lang)]


def say(text: str, lang: str) -> str:
    """The words of `text` (a string or a Text) in `lang`."""
    if lang == "en" or not isinstance(text, str):
        return text
    template = getattr(text, "template", text)
    words = ZH.get(template)
    if words is None:
        return text
    params = getattr(text, "params", {})
    return words.format(**{k: _word(k, v) for k, v in params.items()})


def say_fields(fields: Mapping[str, str] | None, lang: str) -> dict | None:
    return fields and {name: say(hint, lang) for name, hint in fields.items()}


def _word(param: str, value) -> str:
    if isinstance(value, Text):  # a text within a text ("photo refused: <why>")
        return say(value, "zh")
    table = PARAM_WORDS_ZH.get(param, {})
    if isinstance(value, tuple):
        return "或".join(table.get(v, str(v)) for v in value)
    return table.get(value, value) if isinstance(value, str) else value


def validation_hint(error: Mapping) -> str:
    """A request-schema problem (one pydantic error) as a Text keyed by its type."""
    kind, ctx = error["type"], {k: str(v) for k, v in (error.get("ctx") or {}).items()}
    if kind == "extra_forbidden":
        return Text("unknown field")
    template = f"schema:{kind}"
    if template in ZH:
        text = Text(error["msg"])  # the English is pydantic's own
        text.template, text.params = template, ctx
        return text
    return error["msg"]


_STATES = {  # tickets, bindings, alarms, passes (the English words raise sites use)
    "submitted": "已提交", "assigned": "已派单", "accepted": "已接单", "on site": "已到场",
    "on_site": "已到场", "resolved": "已处理", "confirmed": "已确认", "followed up": "已回访",
    "followed_up": "已回访", "closed": "已关闭", "returned": "已退回",
    "waiting for the resident": "待住户补充", "waiting_resident": "待住户补充",
    "cancelled": "已取消", "pending": "待审核", "approved": "已通过", "rejected": "已拒绝",
    "offered": "待住户确认", "revoked": "已解除", "declined": "已谢绝", "open": "未处理",
    "acknowledged": "已确认", "draft": "为草稿", "scheduled": "已定时", "published": "已发布",
    "withdrawn": "已撤回", "in service": "在用", "faulty": "故障", "retired": "已报废",
}
_DONE = {  # "… cannot be <done>"
    "assigned": "派单", "reassigned": "改派", "accepted": "接单", "returned": "退回",
    "checked in": "到场签到", "resolved": "处理完成", "asked about": "追问", "answered": "补充",
    "confirmed": "确认", "reopened": "返修", "cancelled": "取消", "followed up": "回访",
    "closed": "办结", "approved": "通过", "rejected": "拒绝", "revoked": "解除",
    "declined": "谢绝", "edited": "修改", "scheduled": "定时发布", "published": "发布",
    "pinned": "置顶", "unpinned": "取消置顶", "withdrawn": "撤回", "opened": "开放",
    # the actions themselves ("required to <action>", "<action> is for the …")
    "assign": "派单", "reassign": "改派", "accept": "接单", "return": "退回",
    "check_in": "到场签到", "resolve": "处理完成", "ask": "追问", "answer": "补充",
    "confirm": "确认", "reopen": "返修", "cancel": "取消", "follow_up": "回访", "close": "关闭",
    "approve": "通过", "reject": "拒绝", "revoke": "解除", "decline": "谢绝",
    "acknowledge": "确认", "dispatch": "派人处理", "edit": "修改", "schedule": "定时发布",
    "publish": "发布", "pin": "置顶", "unpin": "取消置顶", "withdraw": "撤回", "open": "开放",
    "inspected": "巡检", "repaired": "修复", "retired": "报废", "check": "巡检", "fault": "报故障",
    "repair": "修复", "retire": "报废",
}
_ROLES = {
    "resident": "住户", "dispatcher": "调度（客服）", "assignee": "被派人员", "followup": "回访客服",
    "staff": "工作人员", "editor": "编辑", "scheduler": "定时任务", "admin": "管理员", "manager": "经理", "customer_service": "客服",
    "security": "保安", "security_lead": "保安队长", "maintenance": "维修工",
    "office": "管理处", "inspector": "巡检人员", "technician": "维修人员",
}
PARAM_WORDS_ZH = {
    "state": _STATES, "done": _DONE, "action": _DONE, "actors": _ROLES, "audience": _ROLES,
    "noun": {"repair": "报修", "complaint": "投诉", "ticket": "工单", "binding": "绑定申请",
             "alarm": "告警", "pass": "通行证", "notice": "通知", "survey": "问卷",
             "permit": "装修许可", "equipment": "设备"},
    "stage": {"report": "报修", "work": "完工", "application": "申请", "inspection": "巡查"},
    "reason": {"locked": "门已锁定（应急）", "gate_closed": "不在开放时间内",
               "outside_hours": "不在通行时段内", "outside_days": "今天不是通行日",
               "gate_not_allowed": "无权通过此门"},
    "what": {"object": "对象", "pass": "通行证", "ticket": "工单", "community": "小区",
             "gate": "门", "place": "地点", "resident": "住户", "staff": "工作人员",
             "binding": "绑定申请", "alarm": "告警", "import": "导入", "photo": "照片",
             "message": "消息", "notice": "通知", "survey": "问卷", "equipment": "设备",
             "inspection": "巡检记录"},
}

# English template -> Chinese. Messages first, then the hints `fields` carry.
ZH: dict[str, str] = {
    # -- signing in and permissions --------------------------------------------------------
    "wrong username or password": "用户名或密码错误",
    "too many failed logins; try later": "登录失败次数过多，请稍后再试",
    "no session: sign in first": "尚未登录，请先登录",
    "refresh token is invalid or expired": "登录已失效，请重新登录",
    "refresh token is invalid": "登录已失效，请重新登录",
    "refresh token was already used; this login is revoked": "登录凭证已被使用过，本次登录已作废，请重新登录",
    "missing or wrong {header} header": "缺少或错误的 {header} 请求头",
    "access token expired": "登录已过期，请重新登录",
    "access token is invalid": "登录凭证无效，请重新登录",
    "this login was signed out": "此登录已退出",
    "your access was changed; sign in again": "您的权限已变更，请重新登录",
    "account disabled": "账号已停用",
    "sign in first: missing bearer token": "请先登录",
    "only for {audience}": "仅限{audience}使用",
    "{permission} is not allowed for your role here": "您在本小区的角色无权执行此操作（{permission}）",
    "{permission} is for platform admins": "此操作（{permission}）仅限平台管理员",
    "passes.revoke is not allowed for your role here": "您在本小区的角色无权作废通行证",
    "this needs the operators' token (OPS_TOKEN)": "需要运维令牌（OPS_TOKEN）",
    "the live feed is for staff": "实时动态仅限工作人员",
    'first message must be {"token": ...}': '第一条消息须为 {"token": ...}',
    # -- not found ------------------------------------------------------------------------
    "{what} not found": "未找到{what}",
    "community not found": "未找到该小区",
    "binding not found": "未找到该绑定申请",
    "gate not found": "未找到该门",
    "alarm not found": "未找到该告警",
    "import not found": "未找到该导入记录",
    "message not found": "未找到该消息",
    "pass not found": "未找到该通行证",
    "no such pass": "未找到该通行证",
    "no such revocation": "未找到该停用记录",
    "no such active key": "没有这个在用的密钥",
    "resident not found": "未找到该住户",
    "staff member not found": "未找到该工作人员",
    "photo not found": "未找到该照片",
    "place not found": "未找到该地点",
    "ticket not found": "未找到该工单",
    "no such admin asset": "没有这个管理端文件",
    "no such route": "没有这个接口",
    # -- requests ---------------------------------------------------------------------------
    "invalid {fields}": "填写有误：{fields}",
    "request body is larger than {limit} bytes": "请求内容超过 {limit} 字节",
    "request body is not a valid form: {problem}": "请求的表单格式不正确：{problem}",
    "request body is not valid JSON: {problem}": "请求内容不是有效的 JSON：{problem}",
    "request body is nested too deeply": "请求内容嵌套过深",
    "query parameter is not valid UTF-8": "查询参数不是有效的 UTF-8",
    "{method} is not allowed here": "此处不支持 {method} 请求",
    "internal error; quote the request id when reporting it": "服务器内部错误；反馈时请提供请求编号",
    "{store} is not answering": "{store} 无响应，请稍后再试",
    "bad cursor": "分页游标无效",
    "bad {field}": "{field} 无效",
    "bad device name": "设备名无效",
    "bad last_id": "last_id 无效",
    "send exactly one file": "请只上传一个文件",
    "send multipart/form-data with `photo` files": "请以 multipart/form-data 上传 photo 文件",
    "the admin view is not built: run `make` (it runs vite build)": "管理端尚未构建：请运行 make",
    "the gate hub is not running in this process": "门禁服务未在此进程中运行",
    # HTTP reason phrases (an error that Tornado itself raised)
    "Bad Request": "请求有误", "Unauthorized": "请先登录", "Forbidden": "无权操作",
    "Not Found": "未找到", "Method Not Allowed": "不支持此请求方法", "Conflict": "操作冲突",
    "Request Entity Too Large": "内容过大", "Content Too Large": "内容过大",
    "Unprocessable Entity": "无法处理", "Unprocessable Content": "无法处理",
    "Too Many Requests": "操作太频繁，请稍后再试", "Service Unavailable": "服务暂不可用",
    "Internal Server Error": "服务器内部错误",
    # -- communities, places, gates -----------------------------------------------------------
    "bad place path": "地点路径格式不对",
    "rooms have nothing below them": "房间下面没有更小的地点",
    "unknown time zone": "未知的时区",
    "bad community code": "小区代码格式不对",
    "community code {code} exists": "小区代码 {code} 已存在",
    "not editable": "此项不可修改",
    "unknown setting": "未知的设置项",
    "parent place does not exist": "上级地点不存在",
    "place {path} exists": "地点 {path} 已存在",
    "no such room": "没有这个房间",
    "no such place": "没有这个地点",
    "gate {code} exists": "门的编号 {code} 已存在",
    "gate covers an unknown place": "门覆盖的地点不存在",
    "this gate has no bridge yet": "这扇门还没有配置门禁控制器",
    "unknown mode": "未知的门禁模式",
    "a reason is required": "请填写原因",
    # -- gates ---------------------------------------------------------------------------------
    "too many remote opens; try again in a minute": "远程开门过于频繁，请一分钟后再试",
    "too many unknown short codes; try later": "无效数字码过多，请稍后再试",
    "the gate's bridge is offline": "门禁控制器离线",
    "the bridge did not acknowledge the command": "门禁控制器没有确认开门指令",
    "no gate hub in this process to ask the bridge": "此进程中没有门禁服务，无法询问门禁控制器",
    "the bridge did not say what it did": "门禁控制器没有回报执行结果",
    "the bridge is offline: asked again later": "门禁控制器离线：稍后会再询问",
    "the bridge did not answer: asked again later": "门禁控制器没有应答：稍后会再询问",
    "the gate refuses opening now: {reason}": "此门现在不能开启：{reason}",
    "dispatch to someone who handles alarms here": "请派给本小区负责告警的人员",
    "cannot {action} an alarm that is {state}": "告警{state}，不能{action}",
    # -- people, bindings -------------------------------------------------------------------
    "a tenant link needs a lease end": "租户绑定需要填写租期截止日",
    "lease already ended": "租期已结束",
    "you already have a {state} link to this room": "您与该房间已有一条{state}的绑定",
    "only staff or the room's owner can decide this": "只有工作人员或该房间的业主可以处理",
    "a binding that is {state} cannot be {done}": "绑定申请{state}，不能{done}",
    "binding changed meanwhile; reload it": "绑定申请刚被修改过，请刷新后再试",
    "unknown staff role": "未知的员工角色",
    "phone number belongs to another account": "该手机号已绑定其他账号",
    "bad username": "用户名格式不对",
    "password too short": "密码太短",
    "a new account needs the person's name": "新账号需要填写姓名",
    "username taken": "用户名已被占用",
    "no such username": "没有这个用户名",
    "already on this community's staff": "已是本小区的工作人员",
    "this member works in other communities too; remove their roles here instead":
        "此人还在其他小区任职，请改为移除其在本小区的角色",
    "you cannot disable your own account": "不能停用自己的账号",
    "a community needs an admin: make someone else admin first": "小区至少需要一名管理员：请先任命其他管理员",
    # -- passes and keys --------------------------------------------------------------------------
    "255 active keys: retire some first": "在用密钥已达 255 个，请先停用一些",
    "rotate first: this is the signing key": "这是当前签名密钥，请先轮换",
    "{count} active pass(es) depend on key {key_id}: {listed}; cancel and reissue them, wait until they end, or force":
        "{count} 张有效通行证依赖密钥 {key_id}：{listed}；请作废后重发、等其到期，或强制停用",
    "could not allocate a short code; try again": "未能分配数字码，请重试",
    "none of your roles opens a gate in this community": "您的角色在本小区不能开门",
    "no active room link in this community": "您在本小区没有已生效的房间绑定",
    "unknown gate or one not leading to the room": "门不存在或不通往该房间",
    "no gate for this pass": "此通行证没有可用的门",
    "the pass ends before it starts": "通行证的结束时间早于开始时间",
    "the pass is already over": "通行证已经过期",
    "at most {days} days ahead": "最多提前 {days} 天",
    "choose one of your rooms": "请选择您自己的房间",
    "the pass is already cancelled": "通行证已作废",
    # -- tickets and photos ----------------------------------------------------------------------
    "whose ticket is it?": "请指明是哪位住户的工单",
    "unknown category": "未知的类别",
    "priority does not fit the ticket": "优先级与工单不符",
    "not a resident here": "不是本小区的住户",
    "not the resident's room": "不是该住户的房间",
    "which gate?": "请选择是哪扇门",
    "no such gate": "没有这扇门",
    "only gate tickets name a gate": "只有门禁类工单可以指定门",
    "a visit time is only for in-room work": "只有入户维修可以预约上门时间",
    "bad time window": "时间段不对",
    "time window is over": "时间段已过",
    "say what was done": "请说明处理情况",
    "a rating is required": "请评分",
    "record the call": "请记录回访情况",
    "who should do it?": "请选择处理人",
    "not a worker here": "不是本小区的维修人员",
    "already assigned to them": "已经派给此人",
    "the ticket is {state}": "工单{state}",
    "the {noun} changed meanwhile; reload it": "{noun}刚被修改过，请刷新后再试",
    "the ticket changed meanwhile; reload it": "工单刚被修改过，请刷新后再试",
    "a {noun} that is {state} cannot be {done}": "{noun}{state}，不能{done}",
    "{action} is for the {actors}": "只有{actors}可以执行此操作（{action}）",
    "a {state} ticket cannot be urged": "{state}的工单不能催办",
    "you urged this ticket a moment ago": "您刚催办过此工单，请稍后再试",
    "only the resident, customer service or the worker add photos": "只有住户、客服或维修人员可以上传照片",
    "no {stage} photos on a {state} ticket": "{state}的工单不能上传{stage}照片",
    "no photo in the upload": "没有上传照片",
    "at most {limit} {stage} photos per ticket": "每张工单最多 {limit} 张{stage}照片",
    "photo refused: {reason}": "照片无法使用：{reason}",
    "larger than {size} MB": "大于 {size} MB",
    "not a JPEG, PNG, WebP or HEIC image": "不是 JPEG、PNG、WebP 或 HEIC 图片",
    "more than {count} million pixels": "超过 {count} 百万像素",
    "the image data is damaged": "图片数据已损坏",
    "this photo link is not valid": "照片链接无效",
    "this photo link has expired; reload the ticket": "照片链接已过期，请刷新工单",
    "unknown target": "未知的考核指标",
    # -- decoration permits and patrols -----------------------------------------------------------
    "no such docs file": "没有这个文档文件",
    "a room you own": "应为您名下的房间", "only the room's owner applies": "只有房间业主可以申请",
    "after start": "须晚于开始", "the work ends before it starts": "施工结束早于开始",
    "the dates are over": "日期已过", "each forbidden work must be acknowledged": "每项禁止施工内容都须确认",
    "missing {items}": "缺少：{items}", "permit not found": "未找到该装修许可",
    "after hours_start": "须晚于每日开始时间", "working hours end after they start": "施工时段的结束须晚于开始",
    "unknown checklist item": "未知的检查项", "already a checkpoint": "已是巡更点",
    "that code is taken here": "本小区已有此编号", "each checkpoint once, of this community": "本小区的巡更点，每个一次",
    "unknown or repeated checkpoint": "巡更点未知或重复", "unknown route": "未知的巡更路线",
    "a round ends before the next starts": "一轮巡更须在下一轮开始前结束",
    "at most every_minutes ({minutes})": "最多为间隔分钟数（{minutes}）",
    "assign a role or a person": "请指派一个角色或一个人", "role or staff_id, one": "role 或 staff_id，二选一",
    "plan not found": "未找到该巡更计划",
    "the scan is not from now: scan the tag again": "扫码时间不对：请重新扫描巡更点",
    "within {seconds} s of the server": "须与服务器时间相差 {seconds} 秒以内",
    "no round of this plan is open now": "此计划现在没有进行中的巡更",
    "this plan is assigned to someone else": "此计划已指派给他人",
    "no such checkpoint": "没有这个巡更点", "unknown checkpoint code": "未知的巡更点编号",
    "not the next checkpoint of the route": "不是路线上的下一个巡更点",
    "answer the checkpoint's checklist with ok or problem": "请用 ok 或 problem 回答巡更点的检查项",
    "items: {items}": "检查项：{items}",
    "round not found": "未找到该轮巡更", "visit not found": "未找到该巡更点记录",
    "only who checked in adds the visit's photos": "只有打卡人可以为该记录添加照片",
    "at most {limit} photos per visit": "每个巡更点记录最多 {limit} 张照片",
    "at most {limit} {stage} photos per permit": "每份装修许可最多 {limit} 张{stage}照片",
    "no {stage} photos from you": "您不能上传{stage}照片",
    "no {stage} photos on a {state} permit": "装修许可{state}，不能上传{stage}照片",
    "photos must be this permit's inspection photos": "照片须为本装修许可已上传的巡查照片",
    "upload them first (stage inspection)": "请先上传（巡查照片）",
    "the round changed meanwhile: try again": "该轮巡更刚被修改，请重试",
    "only who found it or the office makes its ticket": "只有发现人或管理处可以为其报修",
    "nothing was found wrong here": "此处未发现问题",
    # -- equipment and inspections ----------------------------------------------------------------
    "that tag code is taken here": "本小区已有此标签编号", "already an item's tag": "已是某台设备的标签",
    "no item has this tag code": "没有设备使用这个标签编号", "no such item": "没有这台设备",
    "unknown tag code": "未知的标签编号", "this is another item's tag": "这是另一台设备的标签",
    "not this item's tag": "不是这台设备的标签",
    "answer the item's checklist with ok or problem": "请用 ok 或 problem 回答设备的检查项",
    "say what the problem is": "请说明发现的问题", "required for a problem": "有问题时必填",
    "say what was done": "请说明维修内容", "required to repair": "修复时必填",
    "say why it is retired": "请说明报废原因", "required to retire": "报废时必填",
    "only the inspector adds photos to an inspection": "只有巡检人本人可以给巡检记录加照片",
    "at most {limit} photos per inspection": "每条巡检记录最多 {limit} 张照片",
    "inspection not found": "未找到该巡检记录",
    "1-16 letters, digits or -": "1-16 个字母、数字或 -", "already in an earlier row": "与前面某行重复",
    "a number of days, 1 to 366": "天数，1 到 366",
    "a round is late before its window closes": "须在巡更时段结束前才算迟到",
    "less than window_minutes ({minutes})": "须小于时段分钟数（{minutes}）",
    # -- notices and surveys --------------------------------------------------------------------
    "notice not found": "未找到该通知", "survey not found": "未找到该问卷",
    "nothing to change": "没有要修改的内容", "give a field to change": "请给出要修改的项",
    "that time has passed": "该时间已过", "when should it appear?": "请设定发布时间",
    "a notice goes to buildings or units": "通知只能发给楼栋或单元",
    "{path} is a room": "{path} 是房间",
    "a published notice keeps its photos": "已发布的通知不能删除照片", "not now": "现在不行",
    "at most {limit} photos per notice": "每条通知最多 {limit} 张照片",
    "the survey is {state}": "问卷{state}",
    "a survey asks something": "问卷至少要有一个问题", "at least one": "至少一个",
    "a choice needs options": "选择题需要选项", "at least two": "至少两个",
    "a free-text question has no options": "填空题没有选项", "none": "不需要",
    "a satisfaction question is single choice with satisfied options": "满意度题须为单选，并标出表示满意的选项",
    "single choice, an option satisfied": "单选，且至少一个选项表示满意",
    "required to schedule": "定时发布时必填", "required to withdraw": "撤回时必填",
    "unknown period": "未知的统计周期",
    # -- imports ------------------------------------------------------------------------------------
    "the file is empty": "文件是空的",
    "old Excel .xls files are not supported": "不支持旧版 Excel .xls 文件",
    "the file is not {declared}": "文件不是 {declared} 格式",
    "too many rows": "行数太多",
    "cannot read the .xlsx file": "无法读取 .xlsx 文件",
    "the .xlsx file is too large unpacked": ".xlsx 文件解压后过大",
    "the sheet is too wide": "表格列数太多",
    "the .csv file is neither UTF-8 nor GB18030 text": ".csv 文件既不是 UTF-8 也不是 GB18030 编码",
    "cannot read the .csv file": "无法读取 .csv 文件",
    "no header row with the required columns": "找不到包含必填列的表头行",
    "another import into this community is running; try again when it ends": "本小区有另一项导入正在进行，请结束后再试",
    # -- WeChat ----------------------------------------------------------------------------------------
    "the WeChat code is invalid or expired; get a new one": "微信登录码无效或已过期，请重新获取",
    "the WeChat code was already used; get a new one": "微信登录码已被使用，请重新获取",
    "WeChat's rate limit is reached; try again in a minute": "微信接口调用太频繁，请一分钟后再试",
    "the user has no subscription for this message": "用户未订阅此消息",
    "WeChat is busy; try again shortly": "微信繁忙，请稍后再试",
    "WeChat refused the request": "微信拒绝了请求",
    "WeChat access token is not available; try again shortly": "暂时无法获取微信凭证，请稍后再试",
    "WeChat cannot be reached; try again shortly": "暂时无法连接微信，请稍后再试",

    # -- hints in `fields` ------------------------------------------------------------------
    "required": "必填",
    "unknown": "未知",
    "unknown field": "未知字段",
    "taken": "已被占用",
    "cannot be changed": "不可修改",
    "must be in the future": "须晚于现在",
    "not valid UTF-8": "不是有效的 UTF-8",
    "at most {limit} bytes": "最多 {limit} 字节",
    "use next_cursor from a page": "请使用上一页返回的 next_cursor",
    "expected a 24-hex id": "应为 24 位十六进制编号",
    "1-64 of letters, digits, . _ -": "1-64 个字母、数字或 . _ -",
    'an event id like "1700000000000-0"': '应为事件编号，例如 "1700000000000-0"',
    "got {count} files": "收到 {count} 个文件",
    "expected like 3, 3-2 or 3-2-1201": "格式如 3、3-2 或 3-2-1201",
    "a building or unit path": "应为楼栋或单元",
    "an IANA name like Asia/Shanghai": "应为 IANA 时区名，例如 Asia/Shanghai",
    "1-32 of a-z 0-9 -, starting with a letter or digit": "1-32 个 a-z、0-9 或 -，以字母或数字开头",
    "no place {path}": "没有地点 {path}",
    "no room {path}": "没有房间 {path}",
    "one of {choices}": "应为以下之一：{choices}",
    "choose from {choices}": "请从以下选择：{choices}",
    "required for staff": "工作人员操作时必填",
    "required for tenants": "租户必填",
    "required for a gate ticket": "门禁类工单必填",
    "required to {action}": "{action}时必填",
    "required to resolve": "处理完成时必填",
    "required for a follow-up": "回访时必填",
    "1 to 5": "1 到 5 分",
    "not a guard or manager of this community": "不是本小区的保安或经理",
    "phone already bound": "手机号已被绑定",
    "3-32 of a-z 0-9 _ . -": "3-32 个 a-z、0-9 或 _ . -",
    "at least {count} characters": "至少 {count} 个字符",
    "already a member: change their roles instead": "已是成员：请改为修改其角色",
    "no such account": "没有这个账号",
    "choose at least one": "请至少选择一个",
    "after valid_from": "须晚于开始时间",
    "within {days} days": "须在 {days} 天之内",
    "not allowed: {gates}": "不允许：{gates}",
    "no room in this community": "在本小区没有房间",
    "one of the resident's rooms": "应为该住户的房间之一",
    "unknown gate": "未知的门",
    "set area to gate": "请把区域设为门禁",
    "not here": "此处不适用",
    "after the start, within a day": "须晚于开始时间，且在一天之内",
    "no such worker here": "本小区没有这位维修人员",
    "choose someone else": "请选择其他人",
    "{count} more allowed": "还可上传 {count} 张",
    "no more allowed": "不能再上传",
    "{choices} for a {noun}": "{noun}可选：{choices}",
    "invalid or expired": "无效或已过期",
    "already used": "已被使用",
    "send the .xlsx or .csv file as the body": "请把 .xlsx 或 .csv 文件作为请求内容发送",
    "save it as .xlsx (Excel Workbook) or .csv (UTF-8)": "请另存为 .xlsx（Excel 工作簿）或 .csv（UTF-8）",
    "the content looks like {actual}": "内容看起来是 {actual}",
    "at most {limit} rows per import; split it": "每次最多导入 {limit} 行，请拆分文件",
    "unpacks to more than {size} MiB (or more than {parts} parts)": "解压后超过 {size} MiB（或超过 {parts} 个部件）",
    "at most {limit} columns; this sheet reaches column {column}: delete the columns right of the table":
        "最多 {limit} 列；此表用到了第 {column} 列：请删除表格右侧的列",
    "bad encoding": "编码不对",
    "the first row must name the columns; required: {wanted}": "第一行须为列名；必填列：{wanted}",
    # import row problems (models/importer.py; shown in the import report)
    "expected 1-8 letters or digits, like 3 or 1201": "应为 1-8 个字母或数字，例如 3 或 1201",
    "expected a number of square metres, like 89.5": "应为平方米数，例如 89.5",
    "must be between 0 and 100000 square metres": "须在 0 到 100000 平方米之间",
    "at most 64 characters": "最多 64 个字符",
    "expected an 11-digit mainland mobile number, like 13800138000": "应为 11 位大陆手机号，例如 13800138000",
    "expected owner, family or tenant (业主, 家属, 租户)": "应为业主、家属或租户",
    "expected a date, like 2027-06-30": "应为日期，例如 2027-06-30",
    "required when the row names a resident": "填写了住户时必填",
    "required for a tenant": "租户必填",
    "an owner has no lease end; leave it empty": "业主没有租期，请留空",
    "the lease has already ended": "租期已结束",

    # -- request-schema problems, by pydantic's error type (validation_hint) --------------------
    "schema:missing": "必填",
    "schema:string_type": "应为文字",
    "schema:string_too_short": "至少 {min_length} 个字符",
    "schema:string_too_long": "最多 {max_length} 个字符",
    "schema:string_pattern_mismatch": "格式不对",
    "schema:int_type": "应为整数", "schema:int_parsing": "应为整数",
    "schema:int_from_float": "应为整数",
    "schema:float_type": "应为数字", "schema:float_parsing": "应为数字",
    "schema:bool_type": "应为 true 或 false", "schema:bool_parsing": "应为 true 或 false",
    "schema:greater_than_equal": "不能小于 {ge}", "schema:less_than_equal": "不能大于 {le}",
    "schema:greater_than": "须大于 {gt}", "schema:less_than": "须小于 {lt}",
    "schema:literal_error": "应为以下之一：{expected}",
    "schema:enum": "应为以下之一：{expected}",
    "schema:list_type": "应为列表", "schema:dict_type": "应为对象", "schema:model_type": "应为对象",
    "schema:too_short": "至少 {min_length} 项", "schema:too_long": "最多 {max_length} 项",
    "schema:datetime_parsing": "应为日期时间，例如 2026-12-02T08:00:00+08:00",
    "schema:datetime_type": "应为日期时间，例如 2026-12-02T08:00:00+08:00",
    "schema:datetime_from_date_parsing": "应为日期时间，例如 2026-12-02T08:00:00+08:00",
    "schema:timezone_aware": "须带时区，例如 2026-12-02T08:00:00+08:00",
    "schema:date_parsing": "应为日期，例如 2026-12-02", "schema:date_type": "应为日期，例如 2026-12-02",
    "schema:date_from_datetime_parsing": "应为日期，例如 2026-12-02",
    "schema:value_error": "取值不对", "schema:assertion_error": "取值不对",
}

"""Console strings: zh-CN first (the command centre's language), English on request."""

from __future__ import annotations

from collections.abc import Callable

LANGS = ("zh-CN", "en")

_STRINGS = {
    "cases": ("案件", "Cases"), "login": ("登录", "Log in"), "logout": ("退出", "Log out"),
    "name": ("用户名", "User name"), "password": ("密码", "Password"),
    "wrong": ("用户名或密码错误", "Wrong user name or password"),
    "throttled": ("失败次数过多，请稍后再试", "Too many failed attempts; try again later"),
    "camera": ("摄像头", "Camera"), "scene": ("场景类别", "Scene class"), "zone": ("区域", "Zone"),
    "state": ("状态", "State"), "since": ("起", "From"), "until": ("止", "To"), "filter": ("筛选", "Filter"),
    "all": ("全部", "All"), "confidence": ("置信度", "Confidence"), "duration": ("持续", "Duration"),
    "repeats": ("重复次数", "Repeats"), "place": ("地点", "Place"), "last_seen": ("最近发现", "Last seen"),
    "export_csv": ("导出CSV", "Export CSV"), "before": ("发现时", "First seen"), "now": ("当前", "Now"),
    "annotated": ("标注", "Annotated"), "timeline": ("处置记录", "Timeline"), "objects": ("目标", "Objects"),
    "confirm": ("确认", "Confirm"), "dismiss": ("误报驳回", "Dismiss as false alarm"),
    "reason": ("原因", "Reason"), "mute": ("屏蔽", "Mute"), "hours": ("小时", "hours"),
    "muted": ("已屏蔽", "Muted"), "verdict": ("审核", "Review"), "confirmed": ("已确认", "Confirmed"),
    "dismissed": ("已驳回", "Dismissed"), "opened": ("新发", "Opened"), "updated": ("持续", "Updated"),
    "resolved": ("已消除", "Resolved"), "no_cases": ("没有案件", "No cases"), "page": ("页", "Page"),
    "coordinates": ("坐标", "Coordinates"), "revision": ("版本", "Revision"),
}


def translator(lang: str) -> Callable[[str], str]:
    i = LANGS.index(lang) if lang in LANGS else 0
    return lambda key: _STRINGS[key][i] if key in _STRINGS else key

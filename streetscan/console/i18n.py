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
    "resolved": ("已消除", "Resolved"), "verified": ("核查已消除", "Verified gone"),
    "still_present": ("核查仍存在", "Still present"), "no_cases": ("没有案件", "No cases"), "page": ("页", "Page"),
    "coordinates": ("坐标", "Coordinates"), "revision": ("版本", "Revision"),
    "cameras": ("摄像头", "Cameras"), "overview": ("总览", "Overview"), "zones": ("区域", "Zones"),
    "live": ("在线", "Live"), "connecting": ("连接中", "Connecting"), "backoff": ("离线重连", "Down, retrying"),
    "disabled": ("已停用", "Disabled"), "stopped": ("已停止", "Stopped"), "recorded": ("录像", "Recorded"),
    "last_frame": ("最近画面", "Last frame"), "fps": ("分析帧率", "Analysed fps"), "drops": ("丢帧", "Dropped"),
    "edit_zones": ("编辑区域", "Edit zones"), "save": ("保存", "Save"), "new_zone": ("新建区域", "New zone"),
    "delete_zone": ("删除区域", "Delete zone"), "undo_point": ("撤销上一点", "Undo last point"),
    "whole_frame": ("整个画面", "Whole frame"), "kind": ("类型", "Kind"), "grade": ("道路等级", "Grade"),
    "classes": ("场景类别", "Scene classes"), "schedule": ("生效时段", "Active hours"),
    "schedule_hint": ("如 07:00-18:00，多段用逗号分隔；留空为全天", "e.g. 07:00-18:00, comma-separated; empty: all day"),
    "draw_hint": ("在画面上单击添加顶点，拖动顶点调整位置", "Click on the picture to add a corner; drag a corner to move it"),
    "no_picture": ("暂无画面", "No picture yet"), "open_now": ("未消除案件", "Open cases"),
    "cameras_down": ("离线摄像头", "Cameras down"), "cases_per_day": ("每日案件（按类别）", "Cases per day by class"),
    "cases_per_camera": ("各摄像头案件", "Cases per camera"), "total_cases": ("案件总数", "All cases"),
    "saved_reloading": ("已保存，系统正在应用新区域", "Saved; the daemon is applying it now"),
    "saved_file": ("已保存；使用该文件的守护进程收到 SIGHUP（或以 --watch 运行）时生效",
                   "Saved; a daemon running on this file applies it on SIGHUP, or at once with --watch"),
    "platform": ("平台分类", "Platform class"), "enforcement": ("处置阶段", "Enforcement"), "days": ("天", "days"),
    "verification": ("核查", "Verification"),
    "decode": ("解码", "Decode"), "decode_full": ("全帧", "all frames"), "decode_keyframe-only": ("仅关键帧", "keyframes only"),
    "shedding": ("过载降载", "shedding load"), "shedding_cameras": ("过载降载中的摄像头", "Cameras shedding load"),
    "show_muted": ("含已屏蔽", "Include muted"), "file": ("文件", "File"), "none": ("无", "none"), "zone_id": ("区域编号", "Zone id"),
}


def translator(lang: str) -> Callable[[str], str]:
    i = LANGS.index(lang) if lang in LANGS else 0
    return lambda key: _STRINGS[key][i] if key in _STRINGS else key

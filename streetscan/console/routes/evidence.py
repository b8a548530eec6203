"""Evidence pictures, served only from inside the output folder's evidence directory."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse

from ..users import User
from ..web import console_of, current_user

router = APIRouter()


@router.get("/evidence/{path:path}")
def evidence(request: Request, path: str, user: User = Depends(current_user)):
    target = (console_of(request).evidence_root / path).resolve()
    # resolve() follows `..` and symlinks: whatever is asked for must end up inside evidence/.
    if not target.is_relative_to(console_of(request).evidence_root) or not target.is_file():
        raise HTTPException(404, "no such evidence")
    return FileResponse(target)

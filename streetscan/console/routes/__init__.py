"""The console's routes, one router per area; console.app includes them all."""

from . import auth, cameras, cases, evidence, overview

ROUTERS = [auth.router, cases.router, cameras.router, overview.router, evidence.router]

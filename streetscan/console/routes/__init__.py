"""The console's routes, one router per area; console.app includes them all."""

from . import auth, cameras, cases, evidence, overview, units

ROUTERS = [auth.router, cases.router, cameras.router, overview.router, units.router, evidence.router]

"""The console's routes, one router per area; console.app includes them all."""

from . import auth, cameras, cases, evidence, labels, overview, units

ROUTERS = [auth.router, cases.router, cameras.router, overview.router, units.router, labels.router, evidence.router]

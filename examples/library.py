"""dynoform's operations as a library: create an app, deploy a directory, scale it.

From the repository's top level, with the local cloud up:  python3 examples/library.py hello
"""

import sys

from provisioner.context import Context
from provisioner.ops import apps, deploy, ps

name = sys.argv[1] if len(sys.argv) > 1 else "hello"

with Context.open("local", say=print) as ctx:
    apps.create(ctx, name)
    deploy.deploy_dir(ctx, name, "examples/python")
    ps.scale(ctx, name, {"web": 2})
    for dyno in ps.list_dynos(ctx, name):
        print(dyno.name, dyno.state, dyno.host)
    print(apps.info(ctx, name).web_url)

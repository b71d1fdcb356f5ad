"""An S3 client without a server, for the engine's S3 logic (tests/unit, tests/integration).

``ScriptedClient(op=[answer, ...])`` answers each operation from its script, in order: an exception is
raised, a callable is called with the request, anything else is returned; an operation with no
script answers ``{}``. When a script runs out it answers ``{}`` too, or, with ``repeat_last``, its
last answer again (a store that always says the same). Every call is recorded in ``calls``.
"""

import types

from botocore.exceptions import ClientError


def client_error(code, status, message=None, op="Op"):
    return ClientError({"Error": {"Code": code, "Message": message or code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, op)


class ScriptedClient(object):
    repeat_last = False

    def __init__(self, **script):
        self.script = dict((k, list(v) if isinstance(v, list) else [v]) for k, v in script.items())
        self.calls = []
        self.meta = types.SimpleNamespace(config=types.SimpleNamespace(request_checksum_calculation="when_required"),
                                          region_name="us-east-1")

    def __getattr__(self, op):
        if op.startswith("_") or op in ("script", "calls", "meta"):
            raise AttributeError(op)

        def call(**kwargs):
            self.calls.append((op, kwargs))
            queue = self.script.get(op)
            if not queue:
                answer = {}
            elif self.repeat_last and len(queue) == 1:
                answer = queue[0]
            else:
                answer = queue.pop(0)
            if callable(answer):
                answer = answer(**kwargs)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return call

    def count(self, op):
        return len([c for c in self.calls if c[0] == op])

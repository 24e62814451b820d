"""Schemathesis hooks for `tests/tests/openapi_fuzz.rs`.

A subscription's `plugin` names one of the app's uploaded plugins: the schema cannot say which
exist, so a generated body naming one is refused (422 `invalid_subscription`) although it fits
the schema. The fuzzer leaves such cases out, in every phase; subscriptions with plugins are
tested by `tests/tests/api/plugins.rs`.
"""

import schemathesis


@schemathesis.hook
def filter_case(context, case):
    body = case.body
    return not (isinstance(body, dict) and isinstance(body.get("plugin"), str))

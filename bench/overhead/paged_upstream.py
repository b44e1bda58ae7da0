"""The demo upstream as the benchmark runs it: pages like HAPI, and like HAPI reads a later
page from the search it already ran.

    gunicorn --workers 1 'bench.overhead.paged_upstream:create_app()'

`demo_upstream` answers every page of `$everything` by running `$everything` again and
slicing it: 26 ms a page for the 5,000-resource resident, 7 s for its 237 pages of 20 —
quadratic in the record, and a cost HAPI FHIR JPA does not have (it keeps a search's
results and serves later pages from them). The record-size phase would time that instead of
the sidecar. Here each resident's `$everything` is run once and remembered (the data never
changes); every page is still its own HTTP request, parsed and answered as before, to the
sidecar and the bare proxy alike.
"""

from __future__ import annotations

import functools

from flask import Flask

from demo_upstream import app as demo


def create_app() -> Flask:
    app = demo.create_app()
    store = app.extensions[demo.EXTENSION]
    store.everything = functools.lru_cache(maxsize=None)(store.everything)
    return app

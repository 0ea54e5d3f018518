"""The web app (``charpoet serve``): a page and a JSON API to write with trained runs, see their
verbatim copies highlighted, chat, and watch training.

``charpoet.web.service`` holds the runs, limits, worker pool and conversations (no HTTP);
``charpoet.web.app.create_app(service)`` is the FastAPI app; ``static/`` is the page.
"""

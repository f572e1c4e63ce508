"""The explorer: `vaelab explore RUN [RUN ...]`, a local web page to move through a trained model's z.

    session.py  what it computes (directions of z, decoding, interpolation, a drawn digit's analysis)
    server.py   the web app: JSON endpoints under /api/ and the page in static/ (Starlette, uvicorn)
    static/     index.html, app.js, style.css: plain files, no build step, no CDN

Starlette and uvicorn are the optional extra `explore` (`pip install 'vaelab[explore]'`).
"""

"""`stylemri explore`: a local web page to explore a trained generator (FastAPI + uvicorn).

    service = ModelService.open("runs/00000-mni152-32")
    app = create_app(service)              # an ASGI app: the page, /api/model, /api/generate, ...
    serve(app, bind("127.0.0.1", 8765))    # until Ctrl-C

Importing this package needs the optional `explore` extra (fastapi, uvicorn, python-multipart).
"""

from stylemri.explore.app import create_app
from stylemri.explore.nearest import TrainingNeighbours, load_training
from stylemri.explore.server import bind, is_loopback, serve
from stylemri.explore.service import ModelService

__all__ = ["create_app", "ModelService", "TrainingNeighbours", "load_training", "bind", "is_loopback", "serve"]

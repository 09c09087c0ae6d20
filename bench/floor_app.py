"""The floor for one-click: a minimal Flask view that inserts one row, on the same server."""
import os

from flask import Flask, request
from sqlalchemy import create_engine, text

engine = create_engine(os.environ["PC_DATABASE_URL"], pool_size=5)
app = Flask(__name__)


@app.post("/u/<token>")
def hit(token):
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO floor_hits (token, body) VALUES (:t, :b)"),
                     {"t": token, "b": request.get_data(as_text=True)})
    return "ok"

"""standpoint: faithful news summaries and demand/position extraction with verbatim evidence."""

from service.batch import summarize_many
from service.schemas import Article, Demand, Position, Result

__all__ = ["Article", "Demand", "Position", "Result", "summarize_many"]

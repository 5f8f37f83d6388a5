"""standpoint: faithful news summaries and demand/position extraction with verbatim evidence."""

from service.batch import summarize_many
from service.briefing import brief
from service.schemas import Article, Briefing, Demand, Position, Result

__all__ = ["Article", "Briefing", "Demand", "Position", "Result", "brief", "summarize_many"]

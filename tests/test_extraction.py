"""The rule extractor on sentence shapes news articles use, one row per shape.

Each row is a sentence, or a short article whose last sentence is the one tested, with
the item the rules should make of that last sentence: who (the actor), what (a demand,
a position, or none) and, where it matters, the stance. The sentences are made up;
the shapes are real. Rows the rules still get wrong are kept, marked xfail with the
reason, so the table also lists what the rules cannot do.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import pytest

from service.article import split_sentences
from service.extraction import find_candidates, to_items


class Row(NamedTuple):
    text: str
    actor: str | None
    kind: str  # "demand", "position" or "none"
    stance: str | None = None  # checked when given
    limit: str | None = None  # why the rules get this row wrong: an expected failure


ROWS = [
    # Appositives: the name before the commas speaks.
    Row(
        "Jane Roe, the union's general secretary, said members would reject any deal "
        "that cut pensions.",
        "Jane Roe",
        "position",
        "oppose",
    ),
    Row(
        "Tomas Berg, a spokesman for the Swedish foreign ministry, said the government "
        "was ready to resume talks.",
        "Tomas Berg",
        "position",
        "support",
    ),
    Row(
        "Amina Yusuf, who chairs the budget committee, insisted that the report must be "
        "published in full.",
        "Amina Yusuf",
        "demand",
    ),
    Row(
        "Maria Lopez, 54, a nurse at a Madrid hospital, said staff were ready to strike.",
        "Maria Lopez",
        "position",
        "support",
    ),
    # Organisations and governments as subjects.
    Row(
        "The European Commission said it welcomed the agreement as a basis for further talks.",
        "European Commission",
        "position",
        "support",
    ),
    Row("Beijing urged Washington to lift the tariffs on Chinese steel.", "Beijing", "demand"),
    Row(
        "The RMT union called on the operator to withdraw the proposed timetable cuts.",
        "RMT",
        "demand",
    ),
    Row(
        "The Kremlin said it rejected the proposal as unacceptable.",
        "Kremlin",
        "position",
        "oppose",
    ),
    Row(
        "Greenpeace called for an immediate ban on new oil and gas licences.",
        "Greenpeace",
        "demand",
    ),
    Row(
        "The European Central Bank said it was ready to act if inflation rose again.",
        "European Central Bank",
        "position",
        "conditional",
    ),
    Row("Ottawa wants the tariffs removed before it signs any new agreement.", "Ottawa", "demand"),
    Row(
        "In a statement, the Foreign Ministry said it strongly opposed the decision.",
        "Foreign Ministry",
        "position",
        "oppose",
    ),
    # "X on Monday urged", "X has repeatedly demanded".
    Row(
        "Prime Minister Mark Holloway on Monday urged provinces to remove internal trade barriers.",
        "Mark Holloway",
        "demand",
    ),
    Row(
        "The White House on Tuesday urged Congress to pass the funding bill.",
        "White House",
        "demand",
    ),
    Row(
        "Washington has repeatedly demanded that Tehran halt uranium enrichment.",
        "Washington",
        "demand",
    ),
    Row(
        "The National Education Union has repeatedly demanded a pay rise above inflation.",
        "National Education Union",
        "demand",
    ),
    # Titles and demonyms before names.
    Row(
        "Polish President Anna Nowak said Europe must build its own air defences.",
        "Anna Nowak",
        "demand",
    ),
    Row(
        "Chinese Foreign Ministry spokesman Li Ming said Beijing firmly opposed the sanctions.",
        "Li Ming",
        "position",
        "oppose",
    ),
    Row(
        "Israeli Prime Minister David Levin said Israel was prepared to accept a temporary truce.",
        "David Levin",
        "position",
        "support",
    ),
    Row(
        "Speaking in Brussels on Thursday, NATO Secretary General Mark Rutter said allies "
        "must spend more on defence.",
        "Mark Rutter",
        "demand",
    ),
    Row(
        "Asked whether Russia would accept peacekeepers, Foreign Minister Ivan Sorokin said "
        "Moscow would never agree to it.",
        "Ivan Sorokin",
        "position",
        "oppose",
    ),
    Row(
        "Mayor Ana Costa told reporters the city would oppose the new runway.",
        "Ana Costa",
        "position",
        "oppose",
    ),
    Row(
        "Transport Secretary Ian Wood refused to rule out further fare rises.",
        "Ian Wood",
        "position",
        "oppose",
    ),
    Row(
        "Opposition leader Tom Hale called the budget “a betrayal of working families” and "
        "said his party would oppose it.",
        "Tom Hale",
        "position",
        "oppose",
    ),
    Row(
        "Finance Minister Lars Holm defended the budget on Tuesday, saying it was a basis "
        "for growth.",
        "Lars Holm",
        "position",
        "support",
    ),
    # Demonyms alone name no one.
    Row("Iranian officials said they were ready to resume talks in Oman.", None, "none"),
    Row("American negotiators rejected the draft on Friday.", None, "none"),
    # Pronoun carry-over.
    Row(
        "Finance Minister Chrystia Vale said the deficit would narrow next year. She added "
        "that the government must cut spending on consultants.",
        "Chrystia Vale",
        "demand",
    ),
    Row(
        "Union leader Marta Silva said talks had made progress. “We will not sign a deal "
        "that cuts jobs,” she said.",
        "Marta Silva",
        "position",
        "oppose",
    ),
    Row(
        "Defence Secretary John Hart said Britain would send more troops. He added that "
        "allies must share the burden.",
        "John Hart",
        "demand",
    ),
    # Title carry-over: a description names the person introduced with that title.
    Row(
        "Prime Minister Mark Holloway met the premiers in Ottawa on Friday. The prime "
        "minister said Canada was ready to respond to any new tariffs.",
        "Mark Holloway",
        "position",
        "support",
    ),
    Row(
        "Kremlin spokesman Pavel Orlov spoke to reporters on Tuesday. The Kremlin spokesman "
        "said Moscow would never accept foreign troops in Ukraine.",
        "Pavel Orlov",
        "position",
        "oppose",
    ),
    Row(
        "Russian President Ivan Petrov arrived in Minsk on Wednesday. The Russian president "
        "said Moscow was open to talks on prisoner exchanges.",
        "Ivan Petrov",
        "position",
        "support",
    ),
    Row(
        "Foreign Minister Karin Lund and Defence Minister Per Holm met in Oslo. The defence "
        "minister said Norway must double its ammunition output.",
        "Per Holm",
        "demand",
    ),
    Row(
        "Foreign Minister Karin Lund summoned the ambassador on Monday. “This is "
        "unacceptable,” the foreign minister said.",
        "Karin Lund",
        "position",
        "oppose",
    ),
    Row(
        "Jane Roe, the union's general secretary, met managers on Monday. The general "
        "secretary said members would never accept the new rota.",
        "Jane Roe",
        "position",
        "oppose",
    ),
    # A description fits only a person whose title has all its words.
    Row(
        "Foreign Minister Karin Lund arrived in Vienna on Sunday. A deputy minister said "
        "the ministry would reject the plan.",
        None,
        "none",
    ),
    Row(
        "U.S. President Tom Baker met Russian President Ivan Petrov in Helsinki. Petrov said "
        "the talks were constructive. The president said Moscow must keep its Black Sea fleet.",
        "Ivan Petrov",
        "demand",
    ),
    Row(
        "The Kremlin spokesman said Moscow would never accept foreign troops in Ukraine.",
        "Kremlin",
        "position",
        "oppose",
    ),
    Row(
        "Ukrainian President Olena Marchuk arrived in Brussels on Monday. Ukraine's Marchuk "
        "said Kyiv would never give up Crimea.",
        "Olena Marchuk",
        "position",
        "oppose",
    ),
    Row(
        "Russian President Ivan Petrov spoke in Minsk. Mr. Petrov said Moscow rejected the plan.",
        "Ivan Petrov",
        "position",
        "oppose",
    ),
    # Quotes split around the attribution, and "said X" inversion.
    Row(
        "Health Secretary Laura Finch faced questions from nurses on Wednesday. “We will "
        "not,” she said, “accept this.”",
        "Laura Finch",
        "position",
        "oppose",
    ),
    Row(
        "“The door remains open,” said Jane Roe, “but only if the company withdraws its offer.”",
        "Jane Roe",
        "position",
        "conditional",
    ),
    Row(
        "“There will never be a ceasefire while the shelling continues,” said Omar Haddad.",
        "Omar Haddad",
        "position",
        "oppose",
    ),
    Row(
        "“We are ready to talk,” said Foreign Minister Karin Lund.",
        "Karin Lund",
        "position",
        "support",
    ),
    Row(
        "“We reject this offer,” said Marta Silva, the union's general secretary.",
        "Marta Silva",
        "position",
        "oppose",
    ),
    Row(
        "“We welcome the decision,” said the ministry's spokeswoman, Lena Vogt.",
        "Lena Vogt",
        "position",
        "support",
    ),
    Row(
        "Union leader Marta Silva spoke first. “We are ready to talk,” said one delegate.",
        None,
        "none",
    ),
    # Headlines make no item.
    Row("Union rejects pay offer as strikes loom", None, "none"),
    Row("‘We will not back down,’ says union chief", None, "none"),
    Row("Beijing urges Washington to lift tariffs", None, "none"),
    # Datelines run into the first sentence; the agency never speaks.
    Row(
        "WASHINGTON, March 3 (Reuters) - Treasury Secretary Paul Grant said on Monday that "
        "China must stop subsidising its steel industry.",
        "Paul Grant",
        "demand",
    ),
    Row(
        "LONDON (Reuters) - Britain's foreign minister said on Tuesday that London would "
        "never recognise the annexation.",
        "Britain",
        "position",
        "oppose",
    ),
    Row(
        "BRUSSELS (AFP) - The European Union's trade chief said the bloc was ready to "
        "retaliate against new tariffs.",
        "European Union",
        "position",
        "support",
    ),
    Row("“We are ready to talk,” a senior official told Reuters.", None, "none"),
    Row("Bloomberg reported that the central bank was ready to cut rates.", None, "none"),
    Row("Moscow is ready to resume talks next week, according to Reuters.", None, "none"),
    Row(
        "PARIS (AFP) - The French government on Wednesday rejected union demands for a "
        "shorter working week.",
        "French government",
        "position",
        "oppose",
        limit="a demonym before a lower-case body ('the French government') is not taken as a "
        "name, and 'demands' as a noun reads as a demand",
    ),
    # Neutral: saying one will not say.
    Row(
        "Carla Mendes, a spokeswoman for the airline, would neither confirm nor deny the reports.",
        "Carla Mendes",
        "position",
        "neutral",
    ),
    Row(
        "Defence Minister Ola Brekke declined to comment on the reports.",
        "Ola Brekke",
        "position",
        "neutral",
    ),
    # Conditional: "only if", "as long as".
    Row(
        "Hamas would release the hostages only if Israel agreed to a full withdrawal, "
        "senior official Khalil Nasser said.",
        "Khalil Nasser",
        "position",
        "conditional",
    ),
    Row(
        "Unite said it would call off the strike as long as the company reinstated the "
        "dismissed workers.",
        "Unite",
        "position",
        "conditional",
    ),
    Row(
        "Tehran will return to the talks only if Washington lifts sanctions first, Foreign "
        "Minister Reza Karimi insisted.",
        "Reza Karimi",
        "demand",
        "conditional",
    ),
    Row(
        "Union leaders Jo Baker and Sam Reid met the minister on Friday. They said they "
        "would strike unless the offer improved.",
        "Jo Baker and Sam Reid",
        "position",
        "conditional",
        limit="joint actors ('Jo Baker and Sam Reid') are not recognised, so 'they' has no "
        "one to refer to",
    ),
    Row(
        "Chancellor Rachel Grey on Tuesday rejected calls for a wealth tax.",
        "Rachel Grey",
        "position",
        "oppose",
        limit="'calls for' as a noun reads as a demand cue, and demand cues win over opposition",
    ),
    Row(
        "President Ivan Petrov addressed the foreign ministry on Friday. In the speech, he "
        "set out his terms: Kyiv must drop its NATO ambitions.",
        "Ivan Petrov",
        "demand",
        limit="a pronoun subject is followed only when a reporting verb comes right after it",
    ),
    # Plain narration makes no item.
    Row("The talks took place in a hotel on the outskirts of Geneva.", None, "none"),
    Row("Hundreds of farmers drove tractors into the centre of Paris on Tuesday.", None, "none"),
    Row("The minister arrived in Kyiv on an overnight train from Poland.", None, "none"),
    # Reported speech via "according to".
    Row(
        "According to Finance Minister Lars Holm, the government will never accept the "
        "proposed rules.",
        "Lars Holm",
        "position",
        "oppose",
    ),
    Row(
        "Any deal must include security guarantees, according to a statement from the "
        "European Commission.",
        "European Commission",
        "demand",
    ),
]


def last_item(text: str) -> tuple[str | None, str, str | None]:
    """The (actor, kind, stance) of the item the rules make of the text's last sentence."""
    sentences = split_sentences(text)
    candidates = find_candidates(text, sentences)
    demands, positions, _ = to_items(candidates, text)
    last = sentences[-1]
    stance = next((c.stance for c in candidates if c.sentence == last), None)
    for demand in demands:
        if demand.start == last.start:
            return demand.actor, "demand", stance
    for position in positions:
        if position.start == last.start:
            return position.actor, "position", position.stance
    return None, "none", None


def _params(rows: list[Row]) -> list[pytest.ParameterSet]:
    params = []
    for row in rows:
        marks = [pytest.mark.xfail(strict=True, reason=row.limit)] if row.limit else []
        last = split_sentences(row.text)[-1].text
        name = "-".join(re.findall(r"\w+", last.lower())[:8])
        params.append(pytest.param(row.text, row.actor, row.kind, row.stance, marks=marks, id=name))
    return params


@pytest.mark.parametrize(("text", "actor", "kind", "stance"), _params(ROWS))
def test_rules_on_sentence_shapes(text: str, actor: str | None, kind: str, stance: str | None):
    found_actor, found_kind, found_stance = last_item(text)
    assert (found_actor, found_kind) == (actor, kind)
    if stance is not None:
        assert found_stance == stance

"""The knowledge base in the real databases: seeding never overwrites a unit's edit, the
index follows every change (on this instance at once, on another by polling)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from router.kb import KnowledgeBase, load_articles
from router.kb_store import KbStore, KbSync

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "kb_sample.yaml"
TODAY = date(2026, 11, 23)


async def test_seed_then_a_units_edit_wins_and_the_index_follows(engine_factory: Any) -> None:
    store = KbStore(await engine_factory())
    articles = await asyncio.to_thread(load_articles, SAMPLE)
    assert await store.seed(articles) == len(articles)
    seen: list[KnowledgeBase] = []
    sync = KbSync(store, seen.append)
    kb = await sync.refresh()
    assert kb.search("停水了去哪里查", on=TODAY)[0].article.id == "water-outage"

    edited = articles[[a.id for a in articles].index("water-outage")].model_copy(
        update={"body": "停水信息请关注“城市水务”公众号。"})
    assert await store.put(edited, "unit:city.water") is False
    assert await store.seed(articles) == 0                 # the seed does not undo the edit
    assert (await store.get("water-outage")).body.startswith("停水信息请关注")  # type: ignore[union-attr]
    assert await store.delete("hf-loan") and not await store.delete("hf-loan")
    kb = await sync.refresh()
    assert "hf-loan" not in {a.id for a in kb.articles} and len(seen) == 2
    assert {a.unit for a in await store.all("city.water")} == {"city.water"}


async def test_another_instance_sees_the_change_by_polling(engine_factory: Any) -> None:
    engine = await engine_factory()
    clock = [datetime(2026, 11, 23, 2, tzinfo=UTC)]
    writer = KbStore(engine, clock=lambda: clock[0])
    seen: list[KnowledgeBase] = []
    other = KbSync(KbStore(engine), seen.append, refresh_seconds=0.02)
    await other.refresh()
    task = asyncio.create_task(other.run())
    try:
        articles = await asyncio.to_thread(load_articles, SAMPLE)
        clock[0] += timedelta(seconds=1)
        await writer.put(articles[0], "office:admin")
        for _ in range(200):
            if len(seen) > 1:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [a.id for a in seen[-1].articles] == [articles[0].id]

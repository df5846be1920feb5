"""Chinese conversations over many sessions: the right memory is recalled, the stale one is not.

More than 50 memories per user, distractors on neighbouring topics, questions worded unlike
the memories, and facts that change (我换到成都工作了). The hashing embedder stands in for a
model: the point is what BM25, the gate, time and supersession do with Chinese text.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rag_memory.memory.service import SpokenTurn
from rag_memory.pipelines.components import Components

START = datetime(2024, 1, 8, 9, 0, tzinfo=UTC)

SESSIONS = [
    [
        "我在北京工作，每天坐地铁上班。",
        "我们组的周会在周一上午开。",
        "我家的猫叫豆豆，是一只橘猫。",
        "周末我喜欢去香山爬山。",
        "我女儿今年上小学二年级。",
        "最近在读《三体》，挺好看的。",
        "公司食堂的红烧肉很好吃。",
        "我每天早上喝一杯美式咖啡。",
        "我的电脑是一台旧的笔记本。",
        "昨天下了一场大雪。",
    ],
    [
        "我报了一个游泳班，每周三晚上上课。",
        "我妈妈下个月来北京看我。",
        "我们项目的代号叫青鸟。",
        "我对花生过敏，吃东西要小心。",
        "我开始学弹吉他了。",
        "楼下新开了一家面馆。",
        "我养的绿萝长得很好。",
        "我的车是一辆白色的电动车。",
        "我最喜欢的歌手是周杰伦。",
        "今天地铁特别挤。",
    ],
    [
        "我们组的周会改到周四下午了。",
        "豆豆最近胃口不太好，带它去看了兽医。",
        "我女儿参加了学校的合唱团。",
        "青鸟项目下个季度要上线。",
        "我在考虑换一台新电脑。",
        "周末去了一趟天津，吃了煎饼果子。",
        "游泳班的教练姓王。",
        "我的生日是十月十二号。",
        "最近睡得不太好。",
        "我把咖啡换成了绿茶。",
    ],
    [
        "我换到成都工作了，现在骑车上班。",
        "成都的火锅比北京的辣多了。",
        "我在成都租了一套两居室。",
        "我女儿转学到了成都的一所小学。",
        "豆豆也跟着我们搬到了成都。",
        "成都的新同事都很友好。",
        "这边的周会还是周四下午开。",
        "我打算周末去都江堰玩。",
        "成都的天气比北京潮湿。",
        "我开始学说四川话。",
    ],
    [
        "我给豆豆买了一个新的猫爬架。",
        "吉他已经能弹几首简单的曲子了。",
        "我们项目组来了两个实习生。",
        "我最近在减肥，晚上不吃主食。",
        "我办了一张健身房的年卡。",
        "周末和同事去看了熊猫基地。",
        "我妈妈说过年要来成都。",
        "新买的电脑是一台台式机。",
        "我发现自己喜欢吃兔头。",
        "春节打算在成都过。",
    ],
    [
        "我的护照快过期了，要去换一本。",
        "明年想带女儿去日本旅游。",
        "我把游泳班换成了瑜伽课。",
        "公司年会定在一月底。",
        "我最近在学做川菜。",
        "豆豆体检一切正常。",
        "我的新自行车是蓝色的。",
        "青鸟项目顺利上线了。",
        "我在读一本关于咖啡的书。",
        "最近每天走一万步。",
    ],
]


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    from rag_memory.config import Settings

    home = tmp_path_factory.mktemp("zh-home")
    settings = Settings.load({"home": home, "embedder": "hashing:1024", "memory_min_score": 0.3})
    service = Components(settings).memory
    for i, turns in enumerate(SESSIONS):
        when = START + timedelta(days=30 * i)
        service.remember_turns("li", f"s{i + 1}", [SpokenTurn(t, created_at=when) for t in turns])
    # another user with look-alike memories, never to be recalled for li
    service.remember_turns("wang", "w1", [
        SpokenTurn("我在上海工作，每天坐公交上班。", created_at=START),
        SpokenTurn("我家的狗叫旺财。", created_at=START),
        SpokenTurn("我们组的周会在周五上午开。", created_at=START),
    ])
    yield service
    service.close()


NOW = START + timedelta(days=200)


def top(memory, question: str, n: int = 3) -> list[str]:
    return [m.text for m in memory.recall("li", question, now=NOW)[:n]]


def test_more_than_fifty_memories_are_stored_for_the_user(memory):
    assert len(memory.list("li")) > 50


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("我家那只橘色的猫叫啥？", "我家的猫叫豆豆"),
        ("我对什么食物过敏？", "我对花生过敏"),
        ("我们那个项目代号是什么来着？", "代号叫青鸟"),
        ("游泳课的老师姓什么？", "教练姓王"),
        ("我哪天过生日？", "十月十二号"),
    ],
)
def test_a_paraphrased_question_recalls_the_memory_that_answers_it(memory, question, expected):
    assert any(expected in t for t in top(memory, question)), top(memory, question, 5)


def test_an_updated_fact_wins_and_the_stale_one_is_not_shown_as_current(memory):
    recalled = memory.recall("li", "我现在在哪个城市工作？", now=NOW)
    first = recalled[0]
    assert "成都" in first.text and first.superseded_by is None
    stale = [m for m in recalled if "北京工作" in m.text]
    assert all(m.superseded_by is not None for m in stale)
    assert all(recalled.index(m) > 0 for m in stale)


def test_a_rescheduled_meeting_is_recalled_as_rescheduled(memory):
    recalled = memory.recall("li", "我们组的例会现在是星期几开？", now=NOW)
    texts = [m.text for m in recalled]
    assert texts and "周四下午" in texts[0]
    old = [m for m in recalled if "周一上午" in m.text]
    assert all(m.superseded_by is not None and recalled.index(m) > 0 for m in old)


def test_another_users_look_alike_memories_never_come_back(memory):
    for question in ("我在哪个城市工作？", "我家的宠物叫什么？", "周会什么时候开？"):
        assert all(m.user_id == "li" for m in memory.recall("li", question, now=NOW))
        assert not any("旺财" in m.text or "上海工作" in m.text for m in memory.recall("li", question, now=NOW))


def test_a_question_about_something_never_said_recalls_nothing(memory):
    assert memory.recall("li", "我的股票投资收益怎么样？", now=NOW) == []


def test_time_cues_in_chinese_prefer_the_named_period(memory):
    # 上个月 said 200 days after the start is the sixth month: session 6 (day 150) is in it.
    recalled = memory.recall("li", "上个月我换了什么课？", now=START + timedelta(days=180))
    assert recalled and "瑜伽课" in recalled[0].text, [(round(m.score, 3), m.text) for m in recalled[:4]]

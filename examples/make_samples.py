#!/usr/bin/env python3
"""Write the sample month of care-plan CSV files in examples/month-202610/.

The files follow the ケアプランデータ連携標準仕様 V4.1 (CSV version 202407):
file names with service-kind codes, CP932, CRLF, no header, free text quoted.
Everything below is fictional. The output depends on nothing but this file:
no randomness, no clock. Re-running it rewrites the same bytes.

Usage:  python3 examples/make_samples.py
"""

import csv
import datetime
import io
import pathlib

OUT_DIR = pathlib.Path(__file__).resolve().parent / "month-202610"

CSV_VERSION = "202407"
YEAR, MONTH = 2026, 10
TARGET_YM = "202610"
DAYS_IN_MONTH = 31

STAMP_PLAN = "20260928100000"  # send unit 1: 1表 + 2表 + 3表 + 補足(000000)
STAMP_RIYOU = "20260928103000"  # send unit 2: 6表 + 7表 + 補足(202610)
STAMP_JSK = {  # 実績 sent back by each service office
    "11": "20261102090000",
    "15": "20261102091500",
    "17": "20261102093000",
}
RIYOU_CREATED = "20260926"  # 作成年月日 of the 利用票 (6表/7表)
JSK_CREATED = "20261102"  # 作成年月日 of the 実績

CM = {
    "no": "1310000001",
    "kind": "43",
    "name": "ひかり居宅介護支援事業所",
    "zip": "101-0051",
    "addr1": "東京都千代田区神田神保町三丁目",
    "addr2": "５番地２　ひかりビル２階",
}

OFFICES = {
    "11": {"no": "1310000011", "name": "さくら訪問介護ステーション",
           "unit_price": "11.40", "price_x100": 1140},
    "15": {"no": "1310000021", "name": "けやきデイサービスセンター",
           "unit_price": "10.90", "price_x100": 1090},
    "17": {"no": "1310000031", "name": "あおば福祉用具",
           "unit_price": "10.00", "price_x100": 1000},
}
KIND_LABEL = {"11": "訪問介護", "15": "通所介護", "17": "福祉用具貸与"}

# サービスコード -> (略称, 単位数) as in the 令和6年度 code table.
# 福祉用具貸与 codes carry no fixed units: the rental price sets them per item.
SERVICE_CODES = {
    "111111": ("身体介護１", 244),
    "111211": ("身体介護２", 387),
    "117211": ("生活援助２", 179),
    "117311": ("生活援助３", 220),
    "152441": ("通所介護Ⅰ５１", 658),
    "152442": ("通所介護Ⅰ５２", 777),
    "152443": ("通所介護Ⅰ５３", 900),
    "155051": ("通所介護個別機能訓練加算Ⅰ１", 56),
    "155301": ("通所介護入浴介助加算Ⅰ", 40),
    "171001": ("車いす貸与", None),
    "171002": ("車いす付属品貸与", None),
    "171003": ("特殊寝台貸与", None),
    "171004": ("特殊寝台付属品貸与", None),
    "171007": ("手すり貸与", None),
    "171009": ("歩行器貸与", None),
}

# 区分支給限度基準額 (単位/月)
LIMITS = {"21": 16765, "22": 19705, "23": 27048, "24": 30938, "25": 36217}

CRLF = "\r\n"


class Q(str):
    """A free-text value: written inside double quotes."""


def q(text):
    return Q(text) if text else ""


# ---------------------------------------------------------------------------
# The users
# ---------------------------------------------------------------------------
# visits: weekly plan. days = ISO weekdays (1 = Mon ... 7 = Sun).
# rentals: 福祉用具貸与 items, one line per item per month.
# deviations: what the service office reports in 実績 when it differs.
# care_plan: 第2表 as 課題 -> 援助目標 -> 援助内容.

USERS = [
    {
        "id": "U1",
        "insurer": "131016",
        "insured_no": "0000123451",
        "kana": "ヤマダ　ハナコ",
        "name": "山田　花子",
        "sex": "2",
        "birth": "19430315",
        "zip": "101-0048",
        "addr1": "東京都千代田区神田司町二丁目",
        "addr2": "１４番地３　コーポ司２０１号",
        "phone": "03-3291-4417",
        "level": "22",
        "prev_level": "21",
        "cert_date": "20260916",
        "valid_from": "20261001",
        "valid_to": "20280930",
        "plan_date": "20260925",
        "first_plan_date": "20220610",
        "plan_kubun": "21",
        "cm_name": "中村　由美",
        "benefit_rate": 90,
        "reason": "1",
        "other_reason": "",
        "ikou": (
            "本人：「膝は痛むけれど、住み慣れたこの家で、できることは自分で続けたい。」\r\n"
            "長女：「遠方（さいたま市）に住んでおり毎日は来られないので、"
            "ヘルパーさんやデイサービスで見守ってほしい。」"
            "長女より\"月に2回は週末に様子を見に来る\"との申し出あり。"
        ),
        "shinsakai": "特になし",
        "houshin": (
            "両膝の痛みに配慮しながら、入浴・掃除・買い物の支援と通所での機能訓練を組み合わせ、"
            "一人暮らしを安心して続けられるよう支援します。\r\n"
            "緊急連絡先：長女 山田恵子様(携帯 090-4417-2231), 主治医 かんだ内科クリニック 佐々木医師。"
        ),
        "visits": [
            {"kind": "11", "days": [1, 5], "start": "1000", "end": "1050",
             "codes": ["117311"], "label": "訪問介護（生活援助）"},
            {"kind": "11", "days": [3], "start": "1000", "end": "1045",
             "codes": ["111211"], "label": "訪問介護（身体介護）"},
            {"kind": "15", "days": [2, 6], "start": "0930", "end": "1645",
             "codes": ["152442", "155301"], "label": "通所介護（入浴あり）"},
        ],
        "rentals": [
            {"code": "171003", "units": 900, "tais": "00123-000201",
             "item": "電動ケアベッド　ラクオキ３モーター"},
            {"code": "171004", "units": 150, "tais": "00123-000312",
             "item": "床ずれ予防マットレス　フワリ９１"},
            {"code": "171004", "units": 50, "tais": "00123-000415",
             "item": "ベッド用サイドレール　ＳＲ－５２"},
        ],
        "deviations": [
            # 10/16 (Fri) 生活援助 cancelled: the user went to the clinic.
            {"kind": "11", "date": 16, "start": "1000", "cancel": True},
        ],
        "activities": [
            ("起床・洗面", "0630", "0700"),
            ("朝食・服薬", "0730", "0800"),
            ("昼食", "1200", "1230"),
            ("夕食・服薬", "1800", "1830"),
            ("就寝", "2100", "2130"),
        ],
        "other_services": (
            "福祉用具貸与（特殊寝台・付属品）\r\n"
            "月1回 かんだ内科クリニック受診（長女付き添い）"
        ),
        "repeat_text": True,
        "care_plan": [
            {
                "kadai": "両膝の痛みがあり、入浴や掃除、買い物を一人で行うことが難しいが、"
                         "自宅での一人暮らしを続けたい。",
                "goals": [
                    {
                        "long": "自宅で清潔を保ち、安心して暮らせる",
                        "short": "週2回、デイサービスで安全に入浴できる",
                        "long_period": "2026/10/01～2027/09/30",
                        "short_period": "2026/10/01～2027/03/31",
                        "items": [
                            ("入浴介助（見守り・洗身の一部介助）", "Y", "通所介護", "15",
                             "週2回（火・土）"),
                        ],
                    },
                    {
                        "long": "清潔な住環境で生活できる",
                        "short": "掃除・買い物の支援を受け、居室とトイレを清潔に保てる",
                        "long_period": "2026/10/01～2027/09/30",
                        "short_period": "2026/10/01～2027/03/31",
                        "items": [
                            ("生活援助（居室・トイレの掃除、買い物）", "Y", "訪問介護", "11",
                             "週2回（月・金）"),
                            ("ゴミ出しの声かけ・見守り", "N", "近隣住民", None, "随時"),
                        ],
                    },
                ],
            },
            {
                "kadai": "下肢筋力が低下しており、起き上がりや屋内の移動で転倒の不安がある。",
                "goals": [
                    {
                        "long": "転倒せずに屋内を移動できる",
                        "short": "起き上がり・立ち上がりが安定する",
                        "long_period": "2026/10/01～2027/09/30",
                        "short_period": "2026/10/01～2027/03/31",
                        "items": [
                            ("機能訓練（下肢筋力訓練・歩行訓練）", "Y", "通所介護", "15",
                             "週2回（火・土）"),
                            ("特殊寝台・付属品の貸与（起き上がりの補助）", "Y", "福祉用具貸与",
                             "17", "毎日"),
                        ],
                    },
                    {
                        "long": "体調の変化を早めに把握し、在宅生活を継続できる",
                        "short": "更衣・服薬の確認を受け、体調を安定させる",
                        "long_period": "2026/10/01～2027/09/30",
                        "short_period": "2026/10/01～2027/03/31",
                        "items": [
                            ("身体介護（更衣介助・服薬確認・体調観察）", "Y", "訪問介護", "11",
                             "週1回（水）"),
                        ],
                    },
                ],
            },
        ],
    },
    {
        "id": "U2",
        "insurer": "131016",
        "insured_no": "0000123469",
        "kana": "スズキ　イチロウ",
        "name": "鈴木　一郎",
        "sex": "1",
        "birth": "19380722",
        "zip": "102-0073",
        "addr1": "東京都千代田区九段北一丁目",
        "addr2": "８番６号",
        "phone": "03-3264-8102",
        "level": "23",
        "prev_level": "23",
        "cert_date": "20260318",
        "valid_from": "20260401",
        "valid_to": "20290331",
        "plan_date": "20260410",
        "first_plan_date": "20230301",
        "plan_kubun": "21",
        "cm_name": "中村　由美",
        "benefit_rate": 80,
        "reason": "",
        "other_reason": "",
        "ikou": (
            "本人：「妻に負担をかけずに、この家で暮らしたい。」\r\n"
            "妻：「朝の着替えやトイレの介助が腰に響くので、手伝ってもらえると助かる。」"
        ),
        "shinsakai": "パーキンソン病による歩行障害があり、転倒に留意すること。",
        "houshin": (
            "朝の身支度と排泄の介助をヘルパーが担い、デイサービスの利用で奥様の休息時間を確保します。\r\n"
            "手すり・車いすを活用し、転倒を防ぎながら住み慣れた自宅での生活を続けられるよう支援します。"
        ),
        "visits": [
            {"kind": "11", "days": [1, 2, 3, 4, 5], "start": "0800", "end": "0825",
             "codes": ["111111"], "label": "訪問介護（身体介護）"},
            {"kind": "15", "days": [3, 6], "start": "0915", "end": "1630",
             "codes": ["152443", "155301"], "label": "通所介護（入浴あり）"},
        ],
        "rentals": [
            {"code": "171001", "units": 600, "tais": "00456-000088",
             "item": "自走用車いす　ライトウォーク２２"},
            {"code": "171003", "units": 900, "tais": "00123-000201",
             "item": "電動ケアベッド　ラクオキ３モーター"},
            # Same code, same units, two places: 明細判別コード 1 (居室) / 2 (廊下).
            {"code": "171007", "units": 300, "tais": "00789-000034",
             "item": "据置型手すり　タチアップ", "meisai": "1"},
            {"code": "171007", "units": 300, "tais": "00789-000034",
             "item": "据置型手すり　タチアップ", "meisai": "2"},
        ],
        "deviations": [
            {"kind": "11", "date": 7, "start": "0800", "new_start": "0810", "new_end": "0835"},
            # 10/14 (Wed) day service cancelled: the user had a fever.
            {"kind": "15", "date": 14, "start": "0915", "cancel": True},
        ],
        "activities": [
            ("起床", "0700", "0730"),
            ("朝食・服薬", "0830", "0900"),
            ("昼食・服薬", "1200", "1230"),
            ("夕食・服薬", "1800", "1830"),
            ("就寝", "2030", "2100"),
        ],
        "other_services": "福祉用具貸与（車いす・特殊寝台・手すり）、月2回 訪問診療（まちなか在宅クリニック）",
        "repeat_text": False,
        "care_plan": [
            {
                "kadai": "朝の起き上がり・着替え・排泄に介助が必要で、腰痛のある妻の介護負担が大きい。",
                "goals": [
                    {
                        "long": "毎朝、身支度を整えて一日を始められる",
                        "short": "平日の朝に更衣・排泄の介助を受けられる",
                        "long_period": "2026/04/01～2027/03/31",
                        "short_period": "2026/04/01～2026/12/31",
                        "items": [
                            ("身体介護（起床介助・更衣・排泄介助）", "Y", "訪問介護", "11",
                             "週5回（月～金）"),
                            ("土日の朝の介助", "N", "家族（妻・長男）", None, "週2回（土・日）"),
                        ],
                    },
                    {
                        "long": "妻が無理なく介護を続けられる",
                        "short": "デイサービスの利用日に妻が休息できる",
                        "long_period": "2026/04/01～2027/03/31",
                        "short_period": "2026/04/01～2026/12/31",
                        "items": [
                            ("通所介護（入浴・食事・レクリエーション）", "Y", "通所介護", "15",
                             "週2回（水・土）"),
                        ],
                    },
                ],
            },
            {
                "kadai": "すくみ足があり、屋内外の移動時に転倒の危険がある。",
                "goals": [
                    {
                        "long": "転倒せずに屋内を移動できる",
                        "short": "手すり・車いすを使い、安全に移動できる",
                        "long_period": "2026/04/01～2027/03/31",
                        "short_period": "2026/04/01～2026/12/31",
                        "items": [
                            ("手すりの貸与（居室・廊下）", "Y", "福祉用具貸与", "17", "毎日"),
                            ("車いす・特殊寝台の貸与", "Y", "福祉用具貸与", "17", "毎日"),
                        ],
                    },
                ],
            },
        ],
    },
    {
        "id": "U3",
        "insurer": "131016",
        "insured_no": "0000123477",
        "kana": "サトウ　トメ",
        "name": "佐藤　トメ",
        "sex": "2",
        "birth": "19350105",
        "zip": "102-0072",
        "addr1": "東京都千代田区飯田橋二丁目",
        "addr2": "３番１１号　飯田橋ハイツ５０３",
        "phone": "03-3239-5530",
        "level": "21",
        "prev_level": "",
        "cert_date": "20260911",
        "valid_from": "20260825",
        "valid_to": "20270228",
        "plan_date": "20260918",
        "first_plan_date": "20260918",
        "plan_kubun": "11",
        "cm_name": "中村　由美",
        "benefit_rate": 90,
        "reason": "",
        "other_reason": "",
        "ikou": (
            "本人：「家にいても一人でテレビを見ているだけ。誰かとおしゃべりがしたい。」\r\n"
            "長女：「日中は仕事で不在のため、転ばずに過ごせるか心配。昼間の居場所があると安心です。」"
        ),
        "shinsakai": "特になし",
        "houshin": (
            "日中の活動と交流の場としてデイサービスを利用し、個別機能訓練で歩行の安定を図ります。\r\n"
            "歩行器を使い、転倒なく近所へ外出できることを目指します。"
        ),
        "visits": [
            {"kind": "15", "days": [1, 4], "start": "0930", "end": "1645",
             "codes": ["152441", "155051"], "label": "通所介護（個別機能訓練）"},
        ],
        "rentals": [
            # Delivered on 10/05: 日割 from day 5 to 31.
            {"code": "171009", "units": 218, "tais": "00321-000150",
             "item": "四輪歩行車　オデカケウォーカー", "from_day": 5},
        ],
        "deviations": [
            {"kind": "15", "date": 22, "start": "0930", "new_start": "0940", "new_end": "1645"},
        ],
        "activities": [
            ("起床", "0630", "0700"),
            ("朝食（長女と）", "0700", "0730"),
            ("昼食", "1200", "1230"),
            ("夕食（家族と）", "1830", "1900"),
            ("就寝", "2100", "2130"),
        ],
        "other_services": "福祉用具貸与（歩行器）\r\n月1回 いいだばし内科受診（長女付き添い）",
        "repeat_text": True,
        "care_plan": [
            {
                "kadai": "日中は一人で過ごす時間が長く、活動量と会話の機会が減っている。",
                "goals": [
                    {
                        "long": "人と交流しながら、いきいきと過ごせる",
                        "short": "週2回デイサービスに通い、レクリエーションに参加できる",
                        "long_period": "2026/10/01～2027/02/28",
                        "short_period": "2026/10/01～2026/12/31",
                        "items": [
                            ("通所介護（レクリエーション・昼食・見守り）", "Y", "通所介護", "15",
                             "週2回（月・木）"),
                        ],
                    },
                ],
            },
            {
                "kadai": "歩行が不安定で、外出時に転倒の不安がある。",
                "goals": [
                    {
                        "long": "歩行器を使って近所へ散歩に出かけられる",
                        "short": "歩行器を使い、屋内外を安全に歩ける",
                        "long_period": "2026/10/01～2027/02/28",
                        "short_period": "2026/10/01～2026/12/31",
                        "items": [
                            ("個別機能訓練（歩行訓練・下肢筋力訓練）", "Y", "通所介護", "15",
                             "週2回（月・木）"),
                            ("歩行器の貸与", "Y", "福祉用具貸与", "17", "毎日"),
                        ],
                    },
                    {
                        "long": "持病を悪化させずに過ごせる",
                        "short": "定期受診を続け、血圧を安定させる",
                        "long_period": "2026/10/01～2027/02/28",
                        "short_period": "2026/10/01～2026/12/31",
                        "items": [
                            ("通院の付き添い", "N", "家族（長女）", None, "月1回"),
                        ],
                    },
                ],
            },
        ],
    },
    {
        "id": "U4",
        "insurer": "131042",
        "insured_no": "0000567891",
        "kana": "タカハシ　マサオ",
        "name": "高橋　正男",
        "sex": "1",
        "birth": "19450910",
        "zip": "169-0051",
        "addr1": "東京都新宿区西早稲田一丁目",
        "addr2": "２２番７号",
        "phone": "03-3203-6624",
        "level": "21",
        "prev_level": "21",
        "cert_date": "20260625",
        "valid_from": "20260801",
        "valid_to": "20280731",
        "plan_date": "20260715",
        "first_plan_date": "20240801",
        "plan_kubun": "21",
        "cm_name": "小林　健太",
        "benefit_rate": 90,
        "reason": "2",
        "other_reason": "",
        "ikou": (
            "本人：「息切れがして掃除や料理がつらい。妻と二人、この家で暮らし続けたい。」\r\n"
            "妻：「私も足が悪く、家事を十分にできない。手伝ってもらえるとありがたい。」"
        ),
        "shinsakai": "心不全の既往があり、塩分制限・体重管理に留意すること。",
        "houshin": (
            "ヘルパーと一緒に減塩の調理と掃除を行い、ご夫婦での在宅生活を支えます。\r\n"
            "服薬と体調の確認を続け、心不全の悪化を防ぎます。"
        ),
        "visits": [
            {"kind": "11", "days": [2, 5], "start": "1400", "end": "1440",
             "codes": ["117211"], "label": "訪問介護（生活援助）"},
            {"kind": "11", "days": [3], "start": "0930", "end": "0955",
             "codes": ["111111"], "label": "訪問介護（身体介護）"},
        ],
        "rentals": [],
        "deviations": [],
        "activities": [
            ("起床・体重測定", "0630", "0700"),
            ("朝食・服薬", "0730", "0800"),
            ("昼食", "1200", "1230"),
            ("夕食・服薬", "1800", "1830"),
            ("就寝", "2130", "2200"),
        ],
        "other_services": "配食サービス（減塩食・週3回）、月2回 訪問診療",
        "repeat_text": False,
        "care_plan": [
            {
                "kadai": "心不全のため息切れがあり、掃除や調理を続けることが難しい。"
                         "妻も要支援で家事を担えない。",
                "goals": [
                    {
                        "long": "夫婦で自宅での生活を続けられる",
                        "short": "ヘルパーと一緒に調理・掃除を行い、減塩の食生活を送れる",
                        "long_period": "2026/08/01～2027/07/31",
                        "short_period": "2026/08/01～2027/01/31",
                        "items": [
                            ("生活援助（調理・掃除）", "Y", "訪問介護", "11", "週2回（火・金）"),
                            ("配食サービス（減塩食）", "N", "新宿区配食サービス", None, "週3回"),
                        ],
                    },
                ],
            },
            {
                "kadai": "薬を飲み忘れることがあり、体調の悪化が心配。",
                "goals": [
                    {
                        "long": "体調を崩さずに過ごせる",
                        "short": "服薬を忘れずに続けられる",
                        "long_period": "2026/08/01～2027/07/31",
                        "short_period": "2026/08/01～2027/01/31",
                        "items": [
                            ("身体介護（服薬確認・体調観察）", "Y", "訪問介護", "11", "週1回（水）"),
                            ("訪問診療", "N", "医療（主治医）", None, "月2回"),
                        ],
                    },
                ],
            },
        ],
    },
    {
        "id": "U5",
        "insurer": "131016",
        "insured_no": "H000000521",  # 生保単独
        "kana": "タナカ　ヨシコ",
        "name": "田中　ヨシ子",
        "sex": "2",
        "birth": "19680612",
        "zip": "101-0052",
        "addr1": "東京都千代田区神田小川町三丁目",
        "addr2": "６番地　小川町アパート１０２号",
        "phone": "03-3295-1086",
        "level": "22",
        "prev_level": "23",
        "cert_date": "20260805",
        "valid_from": "20260901",
        "valid_to": "20270831",
        "plan_date": "20260821",
        "first_plan_date": "20250901",
        "plan_kubun": "21",
        "cm_name": "小林　健太",
        "benefit_rate": 100,
        "reason": "1",
        "other_reason": "",
        "ikou": (
            "本人：「左手足が不自由でも、一人暮らしを続けたい。いつかまた外で働きたい。」\r\n"
            "福祉事務所ケースワーカー：「在宅生活の継続を支援していく。」"
        ),
        "shinsakai": "特になし",
        "houshin": (
            "脳梗塞後遺症（左片麻痺）に配慮し、食事・服薬の支援と住まいの清潔保持で一人暮らしを支えます。\r\n"
            "車いすでの外出の機会を増やし、社会参加につなげます。福祉事務所と連携します。"
        ),
        "visits": [
            {"kind": "11", "days": [1, 3, 5], "start": "1130", "end": "1215",
             "codes": ["111211"], "label": "訪問介護（身体介護）"},
            {"kind": "11", "days": [2], "start": "1000", "end": "1050",
             "codes": ["117311"], "label": "訪問介護（生活援助）"},
        ],
        "rentals": [
            {"code": "171001", "units": 650, "tais": "00456-000120",
             "item": "片手駆動式車いす　ワンハンド２０"},
            {"code": "171002", "units": 50, "tais": "00456-000301",
             "item": "車いす用クッション　エアセル"},
        ],
        "deviations": [
            {"kind": "11", "date": 21, "start": "1130", "new_start": "1140", "new_end": "1225"},
        ],
        "activities": [
            ("起床", "0700", "0730"),
            ("朝食・服薬", "0800", "0830"),
            ("昼食", "1200", "1230"),
            ("夕食（配食）・服薬", "1800", "1830"),
            ("就寝", "2200", "2230"),
        ],
        "other_services": "福祉用具貸与（車いす・クッション）\r\n月1回 脳神経外科受診、福祉事務所ケースワーカー訪問（随時）",
        "repeat_text": True,
        "care_plan": [
            {
                "kadai": "左片麻痺があり、食事の準備や服薬、掃除を一人で行うことが難しい。",
                "goals": [
                    {
                        "long": "一人暮らしを続けながら、栄養のとれた食事ができる",
                        "short": "昼食の準備・摂取と服薬を、支援を受けて確実に行える",
                        "long_period": "2026/09/01～2027/08/31",
                        "short_period": "2026/09/01～2027/02/28",
                        "items": [
                            ("身体介護（食事介助・服薬確認）", "Y", "訪問介護", "11",
                             "週3回（月・水・金）"),
                            ("生活援助（掃除・洗濯）", "Y", "訪問介護", "11", "週1回（火）"),
                        ],
                    },
                ],
            },
            {
                "kadai": "屋外の移動が難しく、外出の機会が少ない。",
                "goals": [
                    {
                        "long": "車いすで地域の活動に参加できる",
                        "short": "車いすで近所へ外出できる",
                        "long_period": "2026/09/01～2027/08/31",
                        "short_period": "2026/09/01～2027/02/28",
                        "items": [
                            ("車いす・クッションの貸与", "Y", "福祉用具貸与", "17", "毎日"),
                            ("生活・就労に関する相談", "N", "千代田区福祉事務所", None, "随時"),
                        ],
                    },
                ],
            },
        ],
    },
]


def kinds_of(user):
    kinds = {v["kind"] for v in user["visits"]}
    if user["rentals"]:
        kinds.add("17")
    return kinds


# ---------------------------------------------------------------------------
# CSV writing
# ---------------------------------------------------------------------------

def render_field(value):
    if isinstance(value, Q):
        return '"' + value.replace('"', '""') + '"'
    text = "" if value is None else str(value)
    if any(ch in text for ch in ',"\r\n'):
        raise ValueError(f"bare field needs quoting: {text!r}")
    return text


def render(records, width):
    out = []
    for rec in records:
        if len(rec) != width:
            raise ValueError(f"record has {len(rec)} fields, expected {width}: {rec[:5]}")
        out.append(",".join(render_field(v) for v in rec) + CRLF)
    text = "".join(out)
    data = text.encode("cp932")
    if data.decode("cp932") != text:
        raise ValueError("text does not round-trip through CP932")
    return data


def write(name, records, width, written):
    path = OUT_DIR / name
    path.write_bytes(render(records, width))
    written.append(name)


def file_name(prefix, ym, src_no, src_kind, dst_no, dst_kind, stamp):
    parts = [prefix]
    if ym is not None:
        parts.append(ym)
    parts += [src_no, src_kind, dst_no, dst_kind, stamp]
    return "_".join(parts) + ".CSV"


# ---------------------------------------------------------------------------
# Service lines (第6表 rows)
# ---------------------------------------------------------------------------

def month_dates(weekdays):
    for day in range(1, DAYS_IN_MONTH + 1):
        d = datetime.date(YEAR, MONTH, day)
        if d.isoweekday() in weekdays:
            yield day


def service_lines(user, actual_kind=None):
    """Lines of one user. actual_kind=None: 予定 for all kinds.
    actual_kind="11" etc.: 実績 of that kind only, after deviations."""
    lines = []
    for visit in user["visits"]:
        if actual_kind is not None and visit["kind"] != actual_kind:
            continue
        for day in month_dates(visit["days"]):
            start, end = visit["start"], visit["end"]
            if actual_kind is not None:
                dev = next((d for d in user["deviations"]
                            if d["kind"] == visit["kind"] and d["date"] == day
                            and d["start"] == visit["start"]), None)
                if dev is not None:
                    if dev.get("cancel"):
                        continue
                    start, end = dev["new_start"], dev["new_end"]
            for code in visit["codes"]:
                lines.append({
                    "kind": visit["kind"], "day": day, "start": start, "end": end,
                    "code": code, "units": SERVICE_CODES[code][1], "count": 1,
                    "tais": "", "item": "", "meisai": "", "mask": "",
                })
    if actual_kind in (None, "17"):
        for r in user["rentals"]:
            from_day = r.get("from_day", 1)
            mask = ""
            if from_day != 1:
                mask = "0" * (from_day - 1) + "1" * (DAYS_IN_MONTH - from_day + 1)
            lines.append({
                "kind": "17", "day": from_day, "start": "9999", "end": "9999",
                "code": r["code"], "units": r["units"], "count": 1,
                "tais": r["tais"], "item": r["item"], "meisai": r.get("meisai", ""),
                "mask": mask,
            })
    order = {"11": 0, "15": 1, "17": 2}
    lines.sort(key=lambda ln: (order[ln["kind"]], ln["day"], ln["start"], ln["code"],
                               ln["meisai"]))
    return lines


def table6_records(user, lines, created, updater):
    recs = []
    for ln in lines:
        office = OFFICES[ln["kind"]]
        recs.append([
            CSV_VERSION, user["insurer"], user["insured_no"], created, TARGET_YM,
            CM["no"], q(user["cm_name"]), ln["units"], "",
            f"{YEAR:04d}{MONTH:02d}{ln['day']:02d}", ln["mask"], ln["start"], ln["end"],
            ln["count"], ln["code"], ln["tais"], "", q(ln["item"]), ln["meisai"],
            office["no"], q(office["name"]), "", "0", updater, "",
        ])
    return recs


# ---------------------------------------------------------------------------
# 第7表 rows
# ---------------------------------------------------------------------------

def table7_records(user, lines):
    head = [CSV_VERSION, user["insurer"], user["insured_no"], RIYOU_CREATED, TARGET_YM]
    tail = ["", "", "", "0", "9999999999", "", CM["no"], ""]  # No.30-37
    rate = user["benefit_rate"]
    recs = []
    grand = {"units": 0, "cost": 0, "claim": 0, "copay": 0}
    for kind in ("11", "15", "17"):
        kind_lines = [ln for ln in lines if ln["kind"] == kind]
        if not kind_lines:
            continue
        office = OFFICES[kind]
        # detail rows: one per service code (福祉用具: one per item)
        groups = []
        for ln in kind_lines:
            key = (ln["code"], ln["tais"], ln["meisai"]) if kind == "17" else (ln["code"],)
            for g in groups:
                if g["key"] == key:
                    g["count"] += ln["count"]
                    break
            else:
                groups.append({"key": key, "code": ln["code"], "units": ln["units"],
                               "count": ln["count"], "tais": ln["tais"], "item": ln["item"]})
        kind_units = 0
        for g in groups:
            total = g["units"] * g["count"]
            kind_units += total
            recs.append(head + [
                q(office["name"]), office["no"], "", g["code"], g["tais"], "", q(g["item"]),
                g["units"], "", "", g["count"], total, total, "", "", "0", total,
                office["unit_price"], "", "", "", "", "", "",
            ] + tail)
        cost = kind_units * office["price_x100"] // 100
        claim = cost * rate // 100
        copay = cost - claim
        recs.append(head + [
            q(office["name"]), office["no"], "", kind + "AAAA", "", "", "",
            0, "", "", 0, kind_units, kind_units, "", "", "0", kind_units,
            office["unit_price"], cost, rate, claim, "", copay, "0",
        ] + tail)
        grand["units"] += kind_units
        grand["cost"] += cost
        grand["claim"] += claim
        grand["copay"] += copay
    limit = LIMITS[user["level"]]
    if grand["units"] > limit:
        raise ValueError(f"{user['id']}: {grand['units']} units exceed the limit {limit}")
    recs.append(head + [
        "", "9999999999", "", "999999", "", "", "",
        0, "", "", 0, grand["units"], grand["units"], "", "", "0", grand["units"],
        "", grand["cost"], "", grand["claim"], "", grand["copay"], "0",
    ] + tail)
    return recs


# ---------------------------------------------------------------------------
# 利用者補足情報, 第1表, 第2表, 第3表
# ---------------------------------------------------------------------------

def hosoku_record(user, for_riyouhyou):
    plan_date = "00000000" if for_riyouhyou else user["plan_date"]
    ym = TARGET_YM if for_riyouhyou else "000000"
    rec = [
        CSV_VERSION, user["insurer"], user["insured_no"], plan_date,
        q(user["kana"]), q(user["name"]), user["sex"], user["birth"], user["zip"],
        q(user["addr1"]), q(user["addr2"]), user["phone"],
        user["cert_date"], user["valid_from"], user["valid_to"], "2", "",
        user["level"], LIMITS[user["level"]],
    ]
    rec += [""] * 36  # No.20-55: 種類別支給限度 slots, not used by these insurers
    rec += ["0" if for_riyouhyou else "", "", "", user["prev_level"],
            CM["no"], CM["no"], "", ym]
    return rec


def table1_record(user):
    return [
        CSV_VERSION, user["insurer"], user["insured_no"], user["plan_date"],
        user["zip"], q(user["addr1"]), q(user["addr2"]), q(user["cm_name"]),
        q(CM["name"]), CM["zip"], q(CM["addr1"]), q(CM["addr2"]), CM["no"],
        user["plan_date"], user["first_plan_date"], user["plan_kubun"], "2",
        user["cert_date"], user["valid_from"], user["valid_to"], user["level"],
        q(user["ikou"]), q(user["shinsakai"]), q(user["houshin"]),
        user["reason"], q(user["other_reason"]), CM["no"], "",
    ]


def table2_records(user):
    head = [CSV_VERSION, user["insurer"], user["insured_no"],
            user["plan_date"], user["plan_date"]]
    recs = []
    for kadai_no, kadai in enumerate(user["care_plan"], start=1):
        first_in_kadai = True
        for goal_no, goal in enumerate(kadai["goals"], start=1):
            first_in_goal = True
            for item_no, (content, insured, kind_text, office_kind, freq) in enumerate(
                    goal["items"], start=1):
                show_kadai = user["repeat_text"] or first_in_kadai
                show_goal = user["repeat_text"] or first_in_goal
                office = OFFICES[office_kind] if office_kind else None
                recs.append(head + [
                    kadai_no, q(kadai["kadai"]) if show_kadai else "",
                    goal_no,
                    q(goal["long"]) if show_goal else "",
                    q(goal["short"]) if show_goal else "",
                    q(goal["long_period"]) if show_goal else "",
                    q(goal["short_period"]) if show_goal else "",
                    item_no, q(content), insured, q(kind_text),
                    office["no"] if office else "", q(office["name"]) if office else "",
                    q(freq), q(goal["short_period"]), CM["no"], "",
                ])
                first_in_kadai = False
                first_in_goal = False
    return recs


def table3_records(user):
    head = [CSV_VERSION, user["insurer"], user["insured_no"],
            user["plan_date"], user["plan_date"]]
    recs = []
    slots = []
    for visit in user["visits"]:
        for day in visit["days"]:
            slots.append((day, visit["start"], visit["end"], visit["label"]))
    for day, start, end, label in sorted(slots):
        recs.append(head + [q(label), day, start, end, "", "", "", ""])
    for activity, start, end in user["activities"]:
        recs.append(head + ["", "", "", "", q(activity), start, end, ""])
    recs.append(head + ["", "", "", "", "", "", "", q(user["other_services"])])
    return recs


# ---------------------------------------------------------------------------

def main():
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUT_DIR.glob("*.CSV"):
        old.unlink()
    written = []
    cm_no, cm_kind = CM["no"], CM["kind"]
    for kind, office in OFFICES.items():
        users = [u for u in USERS if kind in kinds_of(u)]
        dst = (office["no"], kind)

        # send unit 1: 第1表 + 第2表 + 第3表 + 利用者補足情報 (000000)
        def name1(prefix, ym=None):
            return file_name(prefix, ym, cm_no, cm_kind, *dst, STAMP_PLAN)

        write(name1("UP1KYO"), [table1_record(u) for u in users], 28, written)
        write(name1("UP2KYO"), [r for u in users for r in table2_records(u)], 22, written)
        write(name1("UP3KYO"), [r for u in users for r in table3_records(u)], 13, written)
        write(name1("UPHOSOKU", "000000"), [hosoku_record(u, False) for u in users], 63,
              written)

        # send unit 2: 第6表 (予定) + 第7表 + 利用者補足情報 (対象年月)
        def name2(prefix):
            return file_name(prefix, TARGET_YM, cm_no, cm_kind, *dst, STAMP_RIYOU)

        write(name2("UPPLAN"),
              [r for u in users
               for r in table6_records(u, service_lines(u), RIYOU_CREATED, cm_no)],
              25, written)
        write(name2("UPSIKYU"),
              [r for u in users for r in table7_records(u, service_lines(u))], 37, written)
        write(name2("UPHOSOKU"), [hosoku_record(u, True) for u in users], 63, written)

        # 実績 from the service office back to the care-management office
        jsk = file_name("UPJSK", TARGET_YM, office["no"], kind, cm_no, cm_kind,
                        STAMP_JSK[kind])
        write(jsk,
              [r for u in users
               for r in table6_records(u, service_lines(u, actual_kind=kind), JSK_CREATED,
                                       office["no"])],
              25, written)
    verify(written)
    for name in sorted(written):
        print(name)


WIDTHS = {"UPHOSOKU": 63, "UP1KYO": 28, "UP2KYO": 22, "UP3KYO": 13,
          "UPPLAN": 25, "UPJSK": 25, "UPSIKYU": 37}


def verify(names):
    """Re-read every file the way a receiver would and check the basics."""
    for name in names:
        prefix = name.split("_")[0]
        raw = (OUT_DIR / name).read_bytes()
        assert raw.endswith(b"\r\n") and not raw.startswith(b"\xef\xbb\xbf"), name
        rows = list(csv.reader(io.StringIO(raw.decode("cp932"), newline="")))
        assert rows, name
        for row in rows:
            assert len(row) == WIDTHS[prefix], (name, len(row))
            assert row[0] == CSV_VERSION, name
            if prefix in ("UPPLAN", "UPJSK", "UPSIKYU"):
                assert row[4] == TARGET_YM, name


if __name__ == "__main__":
    main()

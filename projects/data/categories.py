"""Official category lists (id, name) of YouTube-VIS 2019, YouTube-VIS 2021 and OVIS."""

from typing import Dict, List

_YTVIS_2019 = (
    "person giant_panda lizard parrot skateboard sedan ape dog snake monkey hand rabbit duck cat cow fish train "
    "horse turtle bear motorbike giraffe leopard fox deer owl surfboard airplane truck zebra tiger elephant "
    "snowboard boat shark mouse frog eagle earless_seal tennis_racket"
)
_YTVIS_2021 = (
    "airplane bear bird boat car cat cow deer dog duck earless_seal elephant fish flying_disc fox frog giant_panda "
    "giraffe horse leopard lizard monkey motorbike mouse parrot person rabbit shark skateboard snake snowboard "
    "squirrel surfboard tennis_racket tiger train truck turtle whale zebra"
)
_OVIS = (
    "Person Bird Cat Dog Horse Sheep Cow Elephant Bear Zebra Giraffe Poultry Giant_panda Lizard Parrot Monkey "
    "Rabbit Tiger Fish Turtle Bicycle Motorcycle Airplane Boat Vehical"  # "Vehical" is the official spelling
)


def _as_categories(names: str) -> List[Dict]:
    return [{"id": i + 1, "name": n} for i, n in enumerate(names.split())]


YTVIS_2019_CATEGORIES = _as_categories(_YTVIS_2019)
YTVIS_2021_CATEGORIES = _as_categories(_YTVIS_2021)
OVIS_CATEGORIES = _as_categories(_OVIS)

assert len(YTVIS_2019_CATEGORIES) == 40 and len(YTVIS_2021_CATEGORIES) == 40 and len(OVIS_CATEGORIES) == 25

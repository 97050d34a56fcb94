"""Who should own a melding of the example region — written out by hand as a test oracle,
independently of the router, from the registry's documented intent."""

WASTE = {"zwerfvuil", "sluikstort", "volle-vuilnisbak"}
IMOG_MEMBERS = {"34002", "34003", "34009", "34013", "34022", "34023", "34040", "34042", "34043"}
MUNICIPALITY_BY_NIS = {
    "34002": "anzegem",
    "34003": "avelgem",
    "34009": "deerlijk",
    "34013": "harelbeke",
    "34022": "kortrijk",
    "34023": "kuurne",
    "34025": "lendelede",
    "34027": "menen",
    "34040": "waregem",
    "34041": "wevelgem",
    "34042": "zwevegem",
    "34043": "spiere-helkijn",
}


def expected_owner(category: str, nis: str) -> str:
    if category in WASTE and nis in IMOG_MEMBERS:
        return "imog"
    if category == "straatverlichting":
        return "fluvius"
    if category in {"verkeerslicht-signalisatie", "hinder-wegenwerken"}:
        return "awv"
    return MUNICIPALITY_BY_NIS[nis]

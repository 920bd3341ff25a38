"""Fixed vocabulary of the synthetic retail world: categories, their price levels and title words.

Kept as data (not generated) so titles read like a shop and the category index is stable:
index i here is category index i in ``shared.ranking.features`` (N_CATEGORIES one-hot).
"""

from __future__ import annotations

from typing import NamedTuple


class Category(NamedTuple):
    name: str
    log_price: float  # mean log(price) in the category
    age_restricted: bool
    nouns: tuple[str, ...]


CATEGORIES: tuple[Category, ...] = (
    Category("fresh produce", 1.2, False, ("apples", "bananas", "tomatoes", "avocados", "berries", "lettuce")),
    Category("dairy", 1.3, False, ("milk", "yogurt", "cheese", "butter", "cream", "kefir")),
    Category("bakery", 1.2, False, ("bread", "bagels", "croissants", "muffins", "baguette", "rolls")),
    Category("snacks", 1.1, False, ("crisps", "pretzels", "nuts", "crackers", "popcorn", "bars")),
    Category("beverages", 1.0, False, ("juice", "soda", "water", "iced tea", "cold brew", "lemonade")),
    Category("wine", 2.6, True, ("merlot", "chardonnay", "rose", "prosecco", "rioja", "riesling")),
    Category("spirits", 3.3, True, ("whisky", "gin", "rum", "vodka", "tequila", "brandy")),
    Category("beer", 1.6, True, ("lager", "ipa", "stout", "pilsner", "pale ale", "porter")),
    Category("tobacco", 2.2, True, ("cigars", "pipe tobacco", "rolling papers", "cigarillos", "snuff",
                                    "lighters")),
    Category("household", 1.8, False, ("detergent", "sponges", "bin bags", "dish soap", "towels", "cleaner")),
    Category("beauty", 2.6, False, ("lipstick", "serum", "moisturiser", "mascara", "shampoo", "perfume")),
    Category("health", 2.2, False, ("vitamins", "plasters", "ibuprofen", "thermometer", "toothpaste",
                                    "sunscreen")),
    Category("baby", 2.5, False, ("nappies", "wipes", "bottles", "pacifier", "baby food", "onesie")),
    Category("pet", 2.4, False, ("dog food", "cat litter", "chew toy", "leash", "fish flakes", "pet bed")),
    Category("kitchen", 3.2, False, ("frying pan", "knife set", "kettle", "blender", "mugs", "cutting board")),
    Category("home decor", 3.4, False, ("candle", "cushion", "vase", "picture frame", "rug", "lamp")),
    Category("garden", 3.1, False, ("hose", "planter", "seeds", "shears", "lawn feed", "gloves")),
    Category("toys", 3.0, False, ("puzzle", "building blocks", "doll", "board game", "plush bear", "kite")),
    Category("books", 2.5, False, ("novel", "cookbook", "atlas", "notebook", "comic", "journal")),
    Category("apparel", 3.4, False, ("t-shirt", "jeans", "hoodie", "socks", "jacket", "dress")),
    Category("shoes", 3.9, False, ("sneakers", "boots", "sandals", "loafers", "slippers", "trainers")),
    Category("sports", 3.5, False, ("yoga mat", "dumbbells", "football", "tennis racket", "water bottle",
                                    "bike helmet")),
    Category("electronics", 4.8, False, ("headphones", "speaker", "charger", "smartwatch", "tablet",
                                         "e-reader")),
    Category("office", 2.4, False, ("pens", "stapler", "desk lamp", "printer paper", "folders", "planner")),
)

ADJECTIVES: tuple[str, ...] = (
    "classic", "organic", "premium", "everyday", "deluxe", "compact", "family size", "eco", "artisan",
    "original", "lightweight", "extra strong", "limited edition", "soft", "smart", "vintage", "fresh",
    "essential", "pro", "mini",
)

# Syllables for ~300 made-up brand names ("Norvik", "Belaro" ...).
BRAND_HEADS: tuple[str, ...] = (
    "Nor", "Bel", "Kai", "Ves", "Tor", "Lum", "Ard", "Cal", "Mir", "Ost", "Pel", "Quin", "Ros", "Sol",
    "Tal", "Ur", "Val", "Wen", "Zan", "Hal",
)
BRAND_TAILS: tuple[str, ...] = (
    "vik", "aro", "ena", "mont", "field", "ora", "ex", "ia", "wood", "stone", "line", "ova", "ent",
    "berg", "is",
)

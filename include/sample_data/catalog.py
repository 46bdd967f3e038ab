"""The raw material of the sample logs: tools, user phrasings, FAQ answers, value pools.

Everything here is plain data for :mod:`include.sample_data.generate`. Templates are
``str.format`` strings over lowercase slot names (``{order_id}``, ``{product}``...); a
template may come with fixed tool arguments that its wording implies (a cancel "because I
found it cheaper" carries ``reason: found_cheaper``). Phrasings deliberately vary: polite
and curt, typos are added later, and some share no word with the tool's description, so
matching a request to a tool takes more than keyword overlap.
"""

from __future__ import annotations

from typing import Any

# --------------------------------------------------------------------------- tools

_ORDER_ID = {"type": "string", "description": "Order number, e.g. ORD-48213."}
_EMAIL = {"type": "string", "description": "Email address of the account."}


def _function(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


TOOLS: list[dict[str, Any]] = [
    _function(
        "get_order_status",
        "Look up the current status of a customer's order by its order number.",
        {"order_id": _ORDER_ID},
        ["order_id"],
    ),
    _function(
        "track_shipment",
        "Get carrier tracking details and the estimated delivery date for an order that has shipped.",
        {"order_id": _ORDER_ID},
        ["order_id"],
    ),
    _function(
        "cancel_order",
        "Cancel an order that has not shipped yet.",
        {
            "order_id": _ORDER_ID,
            "reason": {
                "type": "string",
                "enum": ["changed_mind", "ordered_by_mistake", "found_cheaper", "delivery_too_slow", "other"],
                "description": "Why the customer cancels, if they said so.",
            },
        },
        ["order_id"],
    ),
    _function(
        "request_refund",
        "Start a refund for an item from a delivered order.",
        {
            "order_id": _ORDER_ID,
            "reason": {
                "type": "string",
                "enum": ["damaged", "wrong_item", "not_as_described", "late_delivery", "missing_parts"],
            },
        },
        ["order_id", "reason"],
    ),
    _function(
        "update_shipping_address",
        "Change the delivery address of an order that has not shipped yet.",
        {
            "order_id": _ORDER_ID,
            "new_address": {
                "type": "object",
                "properties": {
                    "street": {"type": "string"},
                    "city": {"type": "string"},
                    "state": {"type": "string", "description": "Two-letter US state code."},
                    "zip_code": {"type": "string"},
                },
                "required": ["street", "city", "state", "zip_code"],
            },
        },
        ["order_id", "new_address"],
    ),
    _function(
        "reset_password",
        "Send a password reset link to the email address of a customer account.",
        {"email": _EMAIL},
        ["email"],
    ),
    _function(
        "find_nearest_store",
        "Find the Acme Retail stores closest to a ZIP code.",
        {
            "zip_code": {"type": "string", "description": "5-digit US ZIP code."},
            "radius_miles": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25},
        },
        ["zip_code"],
    ),
    _function(
        "check_product_availability",
        "Check whether a product is in stock, optionally in a size or color, online or near a ZIP code.",
        {
            "product_name": {"type": "string"},
            "size": {"type": "string"},
            "color": {"type": "string"},
            "zip_code": {"type": "string", "description": "Check stores near this ZIP code instead of online."},
        },
        ["product_name"],
    ),
    _function(
        "apply_discount_code",
        "Apply a promotional code to an open order, or to the cart when no order is given.",
        {"code": {"type": "string"}, "order_id": _ORDER_ID},
        ["code"],
    ),
    _function(
        "get_loyalty_points",
        "Get the Acme Rewards points balance and tier of a customer account.",
        {"email": _EMAIL},
        ["email"],
    ),
    _function(
        "schedule_return_pickup",
        "Book a courier pickup to collect items being returned from an order.",
        {
            "order_id": _ORDER_ID,
            "pickup_date": {"type": "string", "format": "date", "description": "YYYY-MM-DD"},
        },
        ["order_id", "pickup_date"],
    ),
    _function(
        "escalate_to_human",
        "Hand the conversation over to a human support agent.",
        {
            "reason": {"type": "string", "description": "One sentence for the agent."},
            "priority": {"type": "string", "enum": ["low", "normal", "high"]},
        },
        ["reason", "priority"],
    ),
]

#: Relative frequency of each tool in the logs: a few tools dominate, some are rare.
TOOL_WEIGHTS: dict[str, float] = {
    "get_order_status": 22,
    "track_shipment": 18,
    "request_refund": 12,
    "check_product_availability": 12,
    "cancel_order": 9,
    "reset_password": 8,
    "update_shipping_address": 6,
    "find_nearest_store": 5,
    "apply_discount_code": 4,
    "get_loyalty_points": 2,
    "schedule_return_pickup": 1.5,
    "escalate_to_human": 1,
}

# Which slot fills which argument (an argument is set only when its slot appears in the template).
ARG_SLOTS: dict[str, dict[str, str]] = {
    "get_order_status": {"order_id": "order_id"},
    "track_shipment": {"order_id": "order_id"},
    "cancel_order": {"order_id": "order_id"},
    "request_refund": {"order_id": "order_id"},
    "update_shipping_address": {"order_id": "order_id"},
    "reset_password": {"email": "email"},
    "find_nearest_store": {"zip_code": "zip", "radius_miles": "radius"},
    "check_product_availability": {"product_name": "product", "size": "size", "color": "color", "zip_code": "zip"},
    "apply_discount_code": {"code": "code", "order_id": "order_id"},
    "get_loyalty_points": {"email": "email"},
    "schedule_return_pickup": {"order_id": "order_id", "pickup_date": "pickup_date"},
    "escalate_to_human": {},
}

Template = tuple[str, dict[str, Any]]

#: User phrasings per tool, each with the fixed arguments its wording implies.
TOOL_TEMPLATES: dict[str, list[Template]] = {
    "get_order_status": [
        ("What's the status of my order {order_id}?", {}),
        ("Can you check on order {order_id} for me?", {}),
        ("has {order_id} been processed yet", {}),
        ("I placed order {order_id} a few days ago and haven't heard anything. What's going on with it?", {}),
        ("Any update on {order_id}?", {}),
        ("Is my order {order_id} confirmed?", {}),
        ("order {order_id} - status?", {}),
        ("Did {order_id} go through? My card was charged.", {}),
        ("Did you guys get my purchase? Number is {order_id}", {}),
        ("I bought a {product} ({order_id}), is it ready?", {}),
        ("What stage is {order_id} at right now?", {}),
        ("Could you look up {order_id}? I want to know if it's been packed.", {}),
    ],
    "track_shipment": [
        ("Where is my package? Order {order_id}", {}),
        ("Where's my stuff?? {order_id}", {}),
        ("Can I get the tracking number for {order_id}?", {}),
        ("When will {order_id} arrive?", {}),
        ("track {order_id}", {}),
        ("My parcel {order_id} says shipped but I have no idea where it is", {}),
        ("what's the ETA on {order_id}", {}),
        ("Has the courier picked up {order_id}? I need it by {weekday}.", {}),
        ("Which carrier is bringing {order_id}?", {}),
        ("Is {order_id} out for delivery today?", {}),
        ("The {product} I ordered ({order_id}) still hasn't shown up. Where is it?", {}),
    ],
    "cancel_order": [
        ("Please cancel order {order_id}", {}),
        ("I need to cancel {order_id}, I ordered it by mistake", {"reason": "ordered_by_mistake"}),
        ("cancel {order_id} pls, found it cheaper elsewhere", {"reason": "found_cheaper"}),
        ("I changed my mind about {order_id}, can you call it off?", {"reason": "changed_mind"}),
        ("Stop order {order_id}! It's taking way too long to ship", {"reason": "delivery_too_slow"}),
        ("Don't send {order_id}, I no longer want it", {"reason": "changed_mind"}),
        ("Can you scrap my order {order_id}?", {}),
        ("I'd like to cancel my purchase ({order_id}).", {}),
        ("Accidentally bought the {product} twice, please cancel {order_id}", {"reason": "ordered_by_mistake"}),
        ("Nevermind the {product}, kill order {order_id}", {}),
    ],
    "request_refund": [
        ("The {product} in order {order_id} arrived broken, I want my money back", {"reason": "damaged"}),
        ("I got the wrong item in {order_id}. Refund please.", {"reason": "wrong_item"}),
        ("{order_id}: the {product} looks nothing like the photos. Can I get a refund?",
         {"reason": "not_as_described"}),
        ("My order {order_id} came two weeks late, I'd like a refund", {"reason": "late_delivery"}),
        ("The box for {order_id} was missing parts, please refund me", {"reason": "missing_parts"}),
        ("Item from {order_id} was smashed when it arrived. I want a refund.", {"reason": "damaged"}),
        ("You sent me a {other_product} instead of a {product} ({order_id}). money back pls",
         {"reason": "wrong_item"}),
        ("reimburse me for {order_id}, the {product} was cracked", {"reason": "damaged"}),
        ("The {product} from {order_id} is not what was advertised. I want a refund", {"reason": "not_as_described"}),
        ("Half the pieces of the {product} are missing ({order_id}). Refund?", {"reason": "missing_parts"}),
    ],
    "update_shipping_address": [
        ("Can you change the delivery address for {order_id} to {street}, {city}, {state} {zip}?", {}),
        ("I moved! Please ship {order_id} to {street}, {city} {state} {zip} instead", {}),
        ("Send {order_id} to {street}, {city}, {state} {zip} please, not my old place", {}),
        ("wrong address on {order_id}. new one: {street} {city} {state} {zip}", {}),
        ("Update shipping on order {order_id}: {street}, {city}, {state}, {zip}", {}),
        ("Could {order_id} go to my office at {street}, {city}, {state} {zip}?", {}),
        ("I'm staying with family, deliver {order_id} to {street}, {city}, {state} {zip}", {}),
    ],
    "reset_password": [
        ("I forgot my password, my email is {email}", {}),
        ("Can't log in. Account is {email}", {}),
        ("reset password for {email}", {}),
        ("I'm locked out of my account ({email}), help", {}),
        ("Please send a reset link to {email}", {}),
        ("my login isn't working anymore, the address on file is {email}", {}),
        ("How do I get back into my account? I signed up with {email}", {}),
        ("{email} - can't sign in, need a new password", {}),
        ("Locked out again :( it's {email}", {}),
        ("{email} here. I can't get into my profile anymore, can you help?", {}),
    ],
    "find_nearest_store": [
        ("Is there a store near {zip}?", {}),
        ("closest shop to {zip}", {}),
        ("Where can I shop in person around {zip}?", {}),
        ("I'm in {city} ({zip}), any locations within {radius} miles?", {}),
        ("Nearest Acme to zip code {zip} please", {}),
        ("Do you have a physical location close to {zip}?", {}),
        ("what branches are within {radius} miles of {zip}", {}),
        ("I want to visit one of your shops, I live at {zip}", {}),
    ],
    "check_product_availability": [
        ("Do you have the {product} in stock?", {}),
        ("Is the {product} available in {color}?", {}),
        ("{product}, size {size} - any left?", {}),
        ("Can I buy the {product} in {color}, size {size}?", {}),
        ("Is the {product} in stock at stores near {zip}?", {}),
        ("any {product} left? been sold out forever", {}),
        ("When will the {product} be back?", {}),
        ("I'd like to get a {product} in {color}. Got any?", {}),
        ("Can I pick up a {product} near {zip} today?", {}),
        ("Do you carry the {product} in a {size}?", {}),
    ],
    "apply_discount_code": [
        ("I have a promo code {code}, can you apply it to {order_id}?", {}),
        ("Use coupon {code} on my order {order_id}", {}),
        ("forgot to enter {code} at checkout for {order_id} :(", {}),
        ("Can I still get the {code} discount on order {order_id}?", {}),
        ("Please add voucher {code} to my cart", {}),
        ("code {code} isn't working on my basket, can you put it on for me?", {}),
    ],
    "get_loyalty_points": [
        ("How many reward points do I have? {email}", {}),
        ("What's my points balance? Account {email}", {}),
        ("check my rewards for {email}", {}),
        ("Am I gold tier yet? my email is {email}", {}),
        ("How close am I to my next $5 reward? ({email})", {}),
    ],
    "schedule_return_pickup": [
        ("Can a courier collect my return for {order_id} on {date_text}?", {}),
        ("I want to send back {order_id}, please book a pickup for {date_text}", {}),
        ("Schedule a pickup on {date_text} for the return of {order_id}", {}),
        ("Could someone come get the {product} ({order_id}) {date_text}? It's going back.", {}),
    ],
    "escalate_to_human": [
        ("I want to talk to a real person", {"reason": "Customer asked for a human agent.", "priority": "normal"}),
        ("This is the third time I'm writing. Get me a manager now.",
         {"reason": "Repeated contact; customer asks for a manager.", "priority": "high"}),
        ("Can I speak with someone on the phone?",
         {"reason": "Customer wants to speak to an agent by phone.", "priority": "normal"}),
        ("let me talk to a human please, the bot isn't helping",
         {"reason": "Customer asked for a human agent.", "priority": "normal"}),
        ("I've been charged twice for {order_id} and nobody is answering!!",
         {"reason": "Double charge on {order_id}.", "priority": "high"}),
        ("Your website deleted my account and my {product} order, I need a supervisor",
         {"reason": "Account and order lost; customer asks for a supervisor.", "priority": "high"}),
    ],
}

#: Requests that lack a required detail, and the clarifying question the assistant asks.
CLARIFICATIONS: list[tuple[str, str]] = [
    ("I want to return something",
     "I can help with a return. What's your order number? It starts with ORD- and is in your confirmation email."),
    ("where is my order??",
     "Sorry for the wait! Could you share your order number (for example ORD-12345) so I can look it up?"),
    ("I need to change my delivery address",
     "Sure. Which order is this for, and what's the new address including the ZIP code?"),
    ("Is it in stock?",
     "Which product are you looking for? If you tell me the size or color too, I can check availability."),
    ("Can you reset my password", "Of course. What's the email address on your account?"),
    ("Do you have stores around here?", "Happy to help you find one. What's your ZIP code?"),
    ("cancel it", "Which order would you like to cancel? Please share the order number."),
    ("I have a coupon", "Great! What's the code, and which order should I apply it to?"),
    ("my {product} is broken",
     "I'm sorry to hear that. What's the order number? I can start a refund or a replacement."),
    ("how many points have I got", "I can check that. What's the email address on your Acme Rewards account?"),
]

# --------------------------------------------------------------------------- FAQ

#: Store FAQ topics: many phrasings, one reference answer each (so a model can learn them).
FAQ_TOPICS: dict[str, dict[str, Any]] = {
    "returns_policy": {
        "weight": 14,
        "answer": (
            "You can return most items within 30 days of delivery for a full refund, as long as they are unused "
            "and in their original packaging. Start a return from Orders in your account, or bring the item and "
            "your receipt to any Acme Retail store."
        ),
        "questions": [
            "What's your return policy?",
            "How long do I have to return the {product}?",
            "Can I return a {product} I bought {days} days ago?",
            "can I send back something I already opened",
            "If the {product} doesn't fit, can I bring it back?",
            "How do returns work at Acme?",
            "I got a {product} as a gift, can I return it?",
            "What's the deadline for returning stuff?",
            "Is it possible to give back an item I don't like?",
        ],
    },
    "opening_hours": {
        "weight": 12,
        "answer": (
            "Most Acme Retail stores are open Monday to Saturday from 9am to 9pm and Sunday from 10am to 6pm. "
            "Hours for a specific store are on the store locator at acme-retail.example/stores."
        ),
        "questions": [
            "What time do you open?",
            "Are you open on Sundays?",
            "when does the {city} store close tonight",
            "What are your hours?",
            "Is the store open late on {weekday}s?",
            "What time do you close on Saturday?",
            "store hours for {city}?",
            "Are you open at 8am on {weekday}?",
            "Until when can I come by the shop in {city}?",
        ],
    },
    "shipping_costs": {
        "weight": 12,
        "answer": (
            "Standard shipping is free on orders over $50; below that it costs $5.99. Express shipping "
            "(1-2 business days) costs $14.99."
        ),
        "questions": [
            "How much is shipping?",
            "Do you offer free delivery?",
            "What does shipping cost on a ${amount} order?",
            "Is there a minimum for free shipping?",
            "How much is express shipping to {city}?",
            "shipping fees?",
            "Why am I being charged for delivery on a ${amount} order?",
            "Do I pay postage if I only buy a {product}?",
        ],
    },
    "delivery_times": {
        "weight": 10,
        "answer": (
            "Standard delivery takes 3-5 business days and express delivery 1-2 business days. You get a "
            "tracking link by email as soon as your order ships."
        ),
        "questions": [
            "How long does delivery take?",
            "When will I get my order if I order today?",
            "How fast is shipping to {city}?",
            "If I order the {product} now, when does it arrive?",
            "how many days does standard shipping take",
            "Will a {product} ordered on {weekday} arrive by the weekend?",
        ],
    },
    "warranty": {
        "weight": 8,
        "answer": (
            "All electronics and appliances come with a 1-year Acme warranty against manufacturing defects, and "
            "you can add a 3-year Acme Care plan at checkout. Keep your receipt or order number to make a claim."
        ),
        "questions": [
            "Does the {gadget} come with a warranty?",
            "How long is the warranty on the {gadget}?",
            "My {gadget} stopped working after {months} months, is it covered?",
            "What does your warranty cover?",
            "Can I extend the warranty on a {gadget}?",
            "is there a guarantee if my {gadget} breaks",
        ],
    },
    "payment_methods": {
        "weight": 9,
        "answer": (
            "We accept Visa, Mastercard, American Express, Discover, PayPal, Apple Pay, Google Pay and Acme "
            "gift cards. In stores we also accept cash."
        ),
        "questions": [
            "What payment methods do you accept?",
            "Can I pay with {payment}?",
            "Do you take {payment}?",
            "is {payment} accepted online",
            "Which cards can I use?",
            "How can I pay for a {product}?",
        ],
    },
    "gift_cards": {
        "weight": 6,
        "answer": (
            "Acme gift cards are sold online and in stores from $10 to $500, never expire, and work for online "
            "and in-store purchases. Check a balance at acme-retail.example/giftcards."
        ),
        "questions": [
            "Do gift cards expire?",
            "How do I check my gift card balance?",
            "Can I buy a ${amount} gift card?",
            "Can I use a gift card online?",
            "Where can I get a gift card for my {relative}?",
            "does the giftcard work in the {city} store",
        ],
    },
    "price_match": {
        "weight": 5,
        "answer": (
            "We match the price of identical items sold by major retailers, online or in store, within 14 days "
            "of purchase. Contact us with a link to the lower price and your order number."
        ),
        "questions": [
            "Do you price match?",
            "I found the {product} ${amount} cheaper somewhere else, will you match it?",
            "Can I get the difference back if the price drops after I buy?",
            "price match policy?",
            "The {product} went on sale right after I bought it. Can I get the difference?",
        ],
    },
    "international_shipping": {
        "weight": 5,
        "answer": (
            "We currently ship to the United States and Canada only. Orders to Canada may be subject to import "
            "duties, charged by the carrier on delivery."
        ),
        "questions": [
            "Do you ship to {country}?",
            "Can I order from {country}?",
            "Is international shipping available?",
            "I live in {country}, can you deliver there?",
            "do you deliver abroad",
        ],
    },
    "loyalty_program": {
        "weight": 6,
        "answer": (
            "Acme Rewards is free to join: you earn 1 point per dollar spent, and every 100 points gives you a "
            "$5 reward. Gold members (1,000 points a year) get free express shipping."
        ),
        "questions": [
            "How does the rewards program work?",
            "How do I earn points?",
            "What do I get for being a member?",
            "Is Acme Rewards free?",
            "How many points do I need for a reward?",
            "Would I earn points on a ${amount} purchase?",
        ],
    },
    "store_pickup": {
        "weight": 6,
        "answer": (
            "Choose 'Pick up in store' at checkout; most orders are ready within 2 hours. We hold your order for "
            "7 days, and you need your order confirmation and a photo ID to collect it."
        ),
        "questions": [
            "Can I order online and pick up in store?",
            "How long until my pickup order is ready?",
            "Can I pick up the {product} at the {city} store?",
            "Do I need ID to collect my order?",
            "Can my {relative} pick up my order for me?",
            "how long will you keep my click and collect order",
        ],
    },
    "exchanges": {
        "weight": 5,
        "answer": (
            "You can exchange an item for a different size or color within 30 days, free of charge, in any store "
            "or by starting an exchange from Orders in your account."
        ),
        "questions": [
            "Can I exchange the {product} for a different size?",
            "How do I swap this for another color?",
            "Is exchanging free?",
            "The {product} is too small, can I get a bigger one?",
            "I want the {product} in {color} instead, can I trade it in?",
        ],
    },
    "student_discount": {
        "weight": 3,
        "answer": (
            "Students get 10% off full-price items after verifying their status with a valid student email at "
            "acme-retail.example/students. The discount can't be combined with other promo codes."
        ),
        "questions": [
            "Do you have a student discount?",
            "I'm at college in {city}, any deals for students?",
            "How do I get the student discount?",
            "Can I use my student discount with {code}?",
        ],
    },
    "contact_support": {
        "weight": 4,
        "answer": (
            "You can reach Acme Retail support by chat here 24/7, by phone at 1-800-555-0199 (8am-10pm ET "
            "daily), or by email at help@acme-retail.example."
        ),
        "questions": [
            "What's your phone number?",
            "How can I contact customer service?",
            "Is there an email I can write to?",
            "Can I call someone about my {product}?",
            "how do i reach support",
        ],
    },
}

# --------------------------------------------------------------------------- pools

PRODUCTS: list[tuple[str, str]] = [
    ("TrailRunner 2 running shoes", "shoe"),
    ("Waterproof hiking boots", "shoe"),
    ("Canvas low-top sneakers", "shoe"),
    ("Merino crew sweater", "apparel"),
    ("Classic denim jacket", "apparel"),
    ("Linen button-down shirt", "apparel"),
    ("Fleece zip hoodie", "apparel"),
    ("Slim-fit chinos", "apparel"),
    ("Quilted puffer vest", "apparel"),
    ("Bluetooth noise-cancelling headphones", "gadget"),
    ("Robot vacuum S7", "gadget"),
    ("Smart thermostat", "gadget"),
    ("Wireless charging pad", "gadget"),
    ("Electric kettle 1.7L", "gadget"),
    ("4-slice toaster", "gadget"),
    ("LED desk lamp", "gadget"),
    ("Aeropress coffee maker", "item"),
    ("Stainless steel water bottle 32oz", "item"),
    ("Cast iron skillet 12-inch", "item"),
    ("Memory foam pillow", "item"),
    ("Yoga mat", "item"),
    ("Kids' bike helmet", "item"),
    ("Ceramic dinner set (16-piece)", "item"),
    ("Camping tent (4-person)", "item"),
]
APPAREL_SIZES = ["XS", "S", "M", "L", "XL", "XXL"]
SHOE_SIZES = ["7", "7.5", "8", "8.5", "9", "9.5", "10", "10.5", "11", "12", "13"]
COLORS = ["black", "navy", "olive", "charcoal", "white", "red", "forest green", "sand", "burgundy", "light blue"]
CITIES: list[tuple[str, str, str]] = [
    ("Seattle", "WA", "981"), ("Portland", "OR", "972"), ("Austin", "TX", "787"), ("Denver", "CO", "802"),
    ("Chicago", "IL", "606"), ("Boston", "MA", "021"), ("Atlanta", "GA", "303"), ("Miami", "FL", "331"),
    ("Phoenix", "AZ", "850"), ("San Diego", "CA", "921"), ("Minneapolis", "MN", "554"), ("Nashville", "TN", "372"),
    ("Columbus", "OH", "432"), ("Raleigh", "NC", "276"), ("Salt Lake City", "UT", "841"),
    ("Kansas City", "MO", "641"), ("Pittsburgh", "PA", "152"), ("Madison", "WI", "537"), ("Boise", "ID", "837"),
    ("Albuquerque", "NM", "871"), ("Richmond", "VA", "232"), ("Omaha", "NE", "681"), ("Tampa", "FL", "336"),
    ("Sacramento", "CA", "958"),
]
STREET_NAMES = ["Maple", "Oak", "Pine", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park", "Main", "Sunset",
                "Lincoln", "Jackson", "River", "Highland", "Willow", "Meadow", "Chestnut", "Franklin", "Harbor"]
STREET_KINDS = ["St", "Ave", "Blvd", "Rd", "Ln", "Dr", "Ct", "Way"]
FIRST_NAMES = ["emma", "liam", "olivia", "noah", "ava", "mateo", "sophia", "lucas", "mia", "ethan", "amara",
               "wei", "priya", "diego", "fatima", "jonas", "chloe", "omar", "hannah", "kenji", "grace", "ravi",
               "isabella", "samuel", "zoe", "andre", "lena", "marcus", "nora", "tariq"]
LAST_NAMES = ["smith", "garcia", "nguyen", "johnson", "patel", "kim", "brown", "lopez", "muller", "okafor",
              "rossi", "chen", "williams", "haddad", "novak", "silva", "ito", "murphy", "schmidt", "ali"]
EMAIL_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "proton.me", "hotmail.com", "aol.com"]
DISCOUNT_CODES = ["SAVE10", "WELCOME15", "FALL20", "FREESHIP", "VIP25", "BLACKFRIDAY30", "HOLIDAY15", "THANKS5"]
PAYMENTS = ["PayPal", "Apple Pay", "Google Pay", "American Express", "Amex", "a debit card", "Klarna", "Venmo",
            "cash", "a gift card", "Discover"]
COUNTRIES = ["Canada", "Mexico", "the UK", "Germany", "Australia", "France", "Japan", "Ireland", "Brazil"]
RELATIVES = ["mom", "dad", "sister", "brother", "wife", "husband", "grandma", "coworker", "roommate"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
CARRIERS = ["UPS", "FedEx", "USPS", "DHL"]

GREETINGS = ["", "", "", "", "Hi, ", "Hello! ", "hey ", "Hi there, ", "Good morning. ", "Quick question: ",
             "Hello, hope you're well. ", "Excuse me, ", "Hey team, ", "Hiya! "]
SIGN_OFFS = ["", "", "", "", " Thanks!", " Thank you.", " thx", " Thanks in advance.", " Appreciate it!",
             " Cheers", " ASAP please", " :)", " Thank you so much!", " Please help."]

TOOL_SYSTEM_PROMPT = (
    "You are Aria, the customer support assistant of Acme Retail. Use the available tools to look up orders, "
    "shipments, refunds, accounts and stores. Ask a short clarifying question when a required detail is missing. "
    "Never invent order information."
)
FAQ_SYSTEM_PROMPT = (
    "You are the Acme Retail store assistant. Answer customer questions about store policies briefly and "
    "accurately."
)
PRODUCTION_MODEL = "meta/llama-3.1-70b-instruct"

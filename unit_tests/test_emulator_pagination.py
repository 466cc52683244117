"""Page arithmetic of the emulator's list endpoints."""

from mistral_emulator.pagination import cursor_page, decode_cursor, encode_cursor, page_count, page_slice


def test_pages_are_zero_based_and_cover_every_item_once():
    items = list(range(250))
    pages = [page_slice(items, p, 100) for p in range(page_count(250, 100) + 1)]
    assert [len(p) for p in pages] == [100, 100, 50, 0], "the page after the last must be empty"
    assert [x for p in pages for x in p] == items


def test_cursor_walk_reaches_the_end_with_a_null_token():
    items = list(range(45))
    seen, token, pages = [], None, 0
    while True:
        offset = decode_cursor(token)
        chunk, token = cursor_page(items, offset, 20)
        seen.extend(chunk)
        pages += 1
        if token is None:
            break
    assert seen == items and pages == 3


def test_foreign_cursor_is_rejected():
    assert decode_cursor("not-a-cursor!") is None
    assert decode_cursor(encode_cursor(40)) == 40

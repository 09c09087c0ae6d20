"""The staff pages, one module per area, all on the `admin` blueprint: importing them registers the views."""
from . import (  # noqa: F401
    audit_pages,
    branding_pages,
    campaign_list_pages,
    campaign_pages,
    common,
    contact_pages,
    directory_pages,
    import_pages,
    layout_pages,
    request_pages,
    segment_pages,
    signin,
    topic_pages,
    user_pages,
    wording_pages,
)

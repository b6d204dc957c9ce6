"""Naver Pay order-type checkout: Naver Commerce API client, mapping and sandbox.

``NaverPayClient`` (``connectors.naverpay.client``) is the connector; ``NaverPaySandbox``
(``connectors.naverpay.sandbox``) the local simulator; ``store.mileage`` holds R20–R22.
"""

//! HTTP adapter of the external payment gateway (`PaymentGateway` over reqwest):
//! the only place money meets the gateway's wire format.

//! LDAP / Active Directory credential source (to be filled in).

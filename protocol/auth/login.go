package auth

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// LoginMechanism is the SASL name of the LOGIN mechanism
// (draft-murchison-sasl-login), which many mail clients still use.
const LoginMechanism = "LOGIN"

// loginServer implements LOGIN: the server asks "Username:" then
// "Password:"; an initial response (AUTH LOGIN <base64 user>) skips the
// first prompt. Payloads arrive already base64-decoded by the protocol.
type loginServer struct {
	authenticate func(username, password string) error
	username     string
	step         int
}

// ErrLoginSyntax: the client sent an empty or oversized LOGIN response.
var ErrLoginSyntax = errors.New("auth: malformed LOGIN response")

// maxLoginField bounds a user name or password.
const maxLoginField = 1024

// NewLoginServer returns a SASL LOGIN server calling authenticate once
// both fields are in.
func NewLoginServer(authenticate func(username, password string) error) sasl.Server {
	return &loginServer{authenticate: authenticate}
}

func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		s.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		if len(response) == 0 || len(response) > maxLoginField {
			return nil, true, ErrLoginSyntax
		}
		s.username = string(response)
		s.step = 2
		return []byte("Password:"), false, nil
	case 2:
		s.step = 3
		if len(response) > maxLoginField {
			return nil, true, ErrLoginSyntax
		}
		return nil, true, s.authenticate(s.username, string(response))
	}
	return nil, true, ErrLoginSyntax
}
